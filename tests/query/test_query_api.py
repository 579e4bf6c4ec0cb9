"""`POST /v1/query` and `GET /v1/query/{id}` against a real Postgres and Parquet files on disk."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
from litestar.testing import AsyncTestClient

from tests.query.registry import Org, write_parquet
from tests.support.rows import Conn
from trace_core.contracts.queries import BATCH_MAX_ROWS, BATCH_MAX_TIMEOUT_S

Client = AsyncTestClient[Any]


async def blocks(org: Org, objects: Path, rows: int = 5) -> None:
    """`blocks`: a Parquet dataset of `rows` blocks in two files."""
    await org.publish("blocks", "s3")
    half = rows // 2
    write_parquet(objects, org.parquet_key("blocks", 0, half - 1), {"number": list(range(half))})
    write_parquet(objects, org.parquet_key("blocks", half, rows - 1), {"number": list(range(half, rows))})


async def query(client: Client, headers: dict[str, str], sql: str, **options: Any) -> Any:
    return await client.post("/v1/query", json={"sql": sql, **options}, headers=headers)


async def test_json_answer_has_columns_rows_and_pins(query_client: Client, org: Org, objects: Path) -> None:
    await org.publish("typed", "s3")
    write_parquet(
        objects,
        org.parquet_key("typed", 0, 1),
        {
            "n": pa.array([1, 2**60], pa.int64()),
            "amount": pa.array([Decimal("1.50"), None], pa.decimal128(10, 2)),
            "hash": pa.array([b"\x01\xab", b""], pa.binary()),
            "ok": [True, False],
        },
    )
    response = await query(query_client, org.admin, "select * from typed order by n")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == [
        {"name": "n", "type": "BIGINT"},
        {"name": "amount", "type": "DECIMAL(10,2)"},
        {"name": "hash", "type": "BLOB"},
        {"name": "ok", "type": "BOOLEAN"},
    ]
    assert body["rows"] == [[1, "1.50", "0x01ab", True], [str(2**60), None, "0x", False]]
    assert body["row_count"] == 2 and body["truncated"] is False
    assert body["dataset_versions"] == {"typed": str(org.datasets["typed"].version)}
    assert response.headers["x-trace-query-id"] == body["query_id"]


async def test_arrow_and_csv_formats_parse(query_client: Client, org: Org, objects: Path) -> None:
    await blocks(org, objects)
    sql = "select number, number * 2 as doubled, 'b' || number as label from blocks order by number"
    arrow = await query(query_client, org.admin, sql, format="arrow")
    assert arrow.status_code == 200 and arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pyarrow.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == ["number", "doubled", "label"]
    assert table.column("doubled").to_pylist() == [0, 2, 4, 6, 8]
    assert arrow.headers["x-trace-row-count"] == "5" and arrow.headers["x-trace-truncated"] == "false"

    text = await query(query_client, org.admin, sql, format="csv")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text.text)))
    assert rows[0] == ["number", "doubled", "label"]
    assert rows[1:3] == [["0", "0", "b0"], ["1", "2", "b1"]] and len(rows) == 6


async def test_max_rows_truncates(query_client: Client, org: Org, objects: Path) -> None:
    await blocks(org, objects, rows=10)
    response = await query(query_client, org.admin, "select number from blocks order by number", max_rows=3)
    body = response.json()
    assert body["rows"] == [[0], [1], [2]] and body["truncated"] is True and body["row_count"] == 3
    exact = (await query(query_client, org.admin, "select number from blocks", max_rows=10)).json()
    assert exact["truncated"] is False and exact["row_count"] == 10


async def test_join_parquet_with_postgres_hides_system_columns(query_client: Client, org: Org, objects: Path) -> None:
    await blocks(org, objects)
    await org.publish("balances", "postgres")
    await org.create_table("balances", "block bigint, owner text", [(1, "ann", "0_9"), (3, "bob", "0_9")])
    star = (await query(query_client, org.admin, "select * from balances order by block")).json()
    assert [column["name"] for column in star["columns"]] == ["block", "owner"]
    assert star["rows"] == [[1, "ann"], [3, "bob"]]

    sql = "select b.number, p.owner from blocks b join balances p on p.block = b.number order by b.number"
    joined = await query(query_client, org.admin, sql)
    assert joined.status_code == 200, joined.text
    assert joined.json()["rows"] == [[1, "ann"], [3, "bob"]]
    hidden = await query(query_client, org.admin, "select _trace_scope from balances")
    assert hidden.status_code == 400 and "_trace_scope" in hidden.json()["detail"]


async def test_a_running_query_keeps_its_pinned_version(
    query_client: Client, org: Org, objects: Path, db: Conn
) -> None:
    await org.publish("numbers", "s3")
    write_parquet(objects, org.parquet_key("numbers", 0, 0), {"n": [1]})
    # slow: a cross join the optimizer cannot skip, long enough to swap the pointer set under it
    slow_sql = "select max(n) as n, count(*) as c from numbers, range(40000000) r(i) where i % 7 <> n"
    slow = asyncio.create_task(query(query_client, org.admin, slow_sql, timeout_s=60))
    for _ in range(200):
        cursor = await db.execute("SELECT count(*) AS n FROM queries WHERE status = 'Running'")
        row = await cursor.fetchone()
        if row is not None and row["n"] == 1:
            break
        await asyncio.sleep(0.01)
    await org.swap("numbers")
    write_parquet(objects, org.parquet_key("numbers", 0, 0), {"n": [2]})
    after = (await query(query_client, org.admin, "select n from numbers")).json()
    assert after["rows"] == [[2]]
    old = await slow
    assert old.status_code == 200, old.text
    assert old.json()["rows"][0][0] == 1
    assert old.json()["dataset_versions"]["numbers"] != after["dataset_versions"]["numbers"]

    pins = await db.execute(
        """SELECT q.status, p.dataset_version FROM queries q JOIN query_pins p USING (query_id)
           ORDER BY q.created_at"""
    )
    assert [(row["status"], str(row["dataset_version"])) for row in await pins.fetchall()] == [
        ("Completed", old.json()["dataset_versions"]["numbers"]),
        ("Completed", after["dataset_versions"]["numbers"]),
    ]


async def test_missing_and_forbidden_datasets_look_the_same(query_client: Client, org: Org, objects: Path) -> None:
    await blocks(org, objects)
    reader = await org.user("rita", ["reader"])
    forbidden = await query(query_client, reader, "select * from blocks")
    missing = await query(query_client, reader, "select * from blocks_nope")
    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.json()["detail"].replace("blocks", "X") == missing.json()["detail"].replace("blocks_nope", "X")
    assert (await query(query_client, org.admin, "select * from blocks_nope")).status_code == 404

    analyst = await org.user("ann", ["analyst"])
    assert (await query(query_client, analyst, "select count(*) from blocks")).status_code == 404
    await org.grant_read("blocks", "analyst")
    granted = await query(query_client, analyst, "select count(*) as n from blocks")
    assert granted.status_code == 200 and granted.json()["rows"] == [[5]]
    admin = await query(query_client, org.admin, "select count(*) as n from blocks")
    assert admin.json()["rows"] == [[5]]


async def test_a_dataset_with_no_files_yet(query_client: Client, org: Org) -> None:
    await org.publish("later", "s3")
    await org.publish("pg_later", "postgres")
    # the registry's schema of a Postgres dataset is in Postgres's type names
    schema = {
        "columns": [
            {"name": "n", "type": "bigint"},
            {"name": "x", "type": "double precision"},
            {"name": "j", "type": "jsonb"},
            {"name": "_trace_scope", "type": "text"},
        ]
    }
    await org.publish("typed_later", "postgres", schema)
    for name in ("later", "pg_later"):
        response = await query(query_client, org.admin, f"select * from {name}")
        assert response.status_code == 400 and response.json()["detail"] == f"dataset {name!r} has no data yet"
    empty = (await query(query_client, org.admin, "select * from typed_later")).json()
    assert empty["columns"] == [
        {"name": "n", "type": "BIGINT"},
        {"name": "x", "type": "DOUBLE"},
        {"name": "j", "type": "JSON"},
    ]
    assert empty["rows"] == []


async def test_timeout_interrupts_the_query(query_client: Client, org: Org, db: Conn) -> None:
    response = await query(query_client, org.admin, "select sum(i) from range(100000000000) t(i)", timeout_s=0.3)
    assert response.status_code == 408
    assert "timeout_s=0.3" in response.json()["detail"]
    cursor = await db.execute("SELECT status, error, finished_at FROM queries")
    [row] = await cursor.fetchall()
    assert row["status"] == "Failed" and "interrupted" in row["error"] and row["finished_at"] is not None


async def test_sql_errors_and_bad_bodies_are_400(query_client: Client, org: Org) -> None:
    syntax = await query(query_client, org.admin, "selec 1")
    assert syntax.status_code == 400 and "syntax error" in syntax.json()["detail"]
    binder = await query(query_client, org.admin, "select nope")
    assert binder.status_code == 400 and "nope" in binder.json()["detail"]
    for body, field in [
        ({"sql": "select 1", "max_rows": 0}, "max_rows"),
        ({"sql": "select 1", "timeout_s": -1}, "timeout_s"),
        ({"sql": "select 1", "format": "xml"}, "format"),
        ({"max_rows": 3}, "sql"),
    ]:
        response = await query_client.post("/v1/query", json=body, headers=org.admin)
        assert response.status_code == 400 and field in response.text, response.text
        assert "Traceback" not in response.text
    assert (await query_client.post("/v1/query", json={"sql": "select 1"})).status_code == 401


async def test_query_status_is_the_callers(query_client: Client, org: Org, objects: Path) -> None:
    await blocks(org, objects)
    done = (await query(query_client, org.admin, "select count(*) from blocks")).json()
    status = await query_client.get(f"/v1/query/{done['query_id']}", headers=org.admin)
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "succeeded" and body["mode"] == "interactive" and body["row_count"] == 1
    assert body["pins"] == [
        {
            "dataset_name": "blocks",
            "dataset_uuid": str(org.datasets["blocks"].dataset_uuid),
            "dataset_version": str(org.datasets["blocks"].version),
        }
    ]
    failed = await query(query_client, org.admin, "select sum(i) from range(100000000000) t(i)", timeout_s=0.2)
    assert failed.status_code == 408
    other = await org.user("rita", ["reader"])
    assert (await query_client.get(f"/v1/query/{done['query_id']}", headers=other)).status_code == 404
    mine = (await query(query_client, other, "select 1 as one")).json()
    assert (await query_client.get(f"/v1/query/{mine['query_id']}", headers=org.admin)).status_code == 200


async def test_health_metrics_and_schema(query_client: Client, org: Org) -> None:
    assert (await query_client.get("/healthz")).json() == {"status": "ok"}
    await query(query_client, org.admin, "select 1")
    await query(query_client, org.admin, "select * from nothing_here")
    metrics = (await query_client.get("/metrics")).text
    assert 'trace_queries_total{outcome="completed"} 1.0' in metrics
    assert 'trace_queries_total{outcome="not_found"} 1.0' in metrics
    assert "trace_query_duration_seconds_bucket" in metrics
    schema = (await query_client.get("/schema/openapi.json")).json()
    assert {"/v1/query", "/v1/query/{query_id}", "/v1/query/{query_id}/result", "/v1/query/{query_id}/cancel"} <= set(
        schema["paths"]
    )
    assert "202" in schema["paths"]["/v1/query"]["post"]["responses"]


async def test_bad_inputs_of_both_modes_name_the_field(query_client: Client, org: Org) -> None:
    for body, field, says in [
        ({"sql": "select 1", "mode": "bulk"}, "mode", "interactive"),
        ({"sql": "select 1", "mode": "batch", "format": "xml"}, "format", "json"),
        ({"sql": "select 1", "mode": "batch", "max_rows": 0}, "max_rows", "greater than or equal to 1"),
        ({"sql": "select 1", "mode": "batch", "max_rows": BATCH_MAX_ROWS + 1}, "max_rows", "less than or equal"),
        ({"sql": "select 1", "mode": "batch", "timeout_s": BATCH_MAX_TIMEOUT_S + 1}, "timeout_s", "less than"),
        ({"sql": "select 1", "max_rows": 2_000_000}, "max_rows", "use mode batch"),
        ({"sql": "select 1", "timeout_s": 301}, "timeout_s", "use mode batch"),
        ({"mode": "batch"}, "sql", "required"),
    ]:
        response = await query_client.post("/v1/query", json=body, headers=org.admin)
        assert response.status_code == 400, response.text
        [problem] = response.json()["extra"]
        assert problem["key"] == field and says in problem["message"], problem
    # the interactive limits stop at their bounds; batch ones go further
    fits = await query(query_client, org.admin, "select 1 as one", max_rows=1_000_000, timeout_s=300)
    assert fits.status_code == 200


async def test_unknown_and_malformed_query_ids(query_client: Client, org: Org) -> None:
    unknown = uuid.uuid4()
    for response in (
        await query_client.get(f"/v1/query/{unknown}", headers=org.admin),
        await query_client.get(f"/v1/query/{unknown}/result", headers=org.admin),
        await query_client.post(f"/v1/query/{unknown}/cancel", headers=org.admin),
    ):
        assert response.status_code == 404 and response.json()["detail"] == f"no query {unknown} that you may see"
    for path in ("/v1/query/not-a-uuid", "/v1/query/12345/result"):
        malformed = await query_client.get(path, headers=org.admin)
        assert malformed.status_code == 400, malformed.text
        assert "query_id" in malformed.text and "Traceback" not in malformed.text
    bad_params: list[tuple[dict[str, int | str], str]] = [
        ({"offset": -1}, "offset"),
        ({"limit": 0}, "limit"),
        ({"format": "xml"}, "format"),
    ]
    for params, field in bad_params:
        bad = await query_client.get(f"/v1/query/{unknown}/result", params=params, headers=org.admin)
        assert bad.status_code == 400 and field in bad.text, bad.text

    done = (await query(query_client, org.admin, "select 1 as one")).json()
    kept = await query_client.get(f"/v1/query/{done['query_id']}/result", headers=org.admin)
    assert kept.status_code == 409 and "interactive" in kept.json()["detail"]
    ended = await query_client.post(f"/v1/query/{done['query_id']}/cancel", headers=org.admin)
    assert ended.status_code == 409 and "ends with its request" in ended.json()["detail"]
