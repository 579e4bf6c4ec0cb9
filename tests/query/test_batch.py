"""Batch queries end to end: the Query Service, the dispatcher and a worker as processes on loopback, one Postgres.

A batch query is checked and pinned at submission, runs as a task of the `duckdb_query` operator (scheduled and
fetched like any task) against exactly its pinned versions, and its Parquet result is read back in pages.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import boto3
import httpx
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.query.registry import Org, make_org, write_parquet
from tests.support.aws import AWS_ENV, moto_server
from tests.support.dags import EXAMPLES
from tests.support.rows import Conn
from tests.support.stack import Stack, running_stack, wait_for
from trace_cli.main import app as cli
from trace_core.objectstore import S3ObjectStore

TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture
def batch_stack(stack: Stack) -> Stack:
    """The dispatcher process of `stack`, plus the Query Service as a process; start workers in the test."""
    stack.start_query_service()
    return stack


def submit(stack: Stack, sql: str, token: str | None = None, **options: Any) -> dict[str, Any]:
    with stack.query_client(token) as api:
        response = api.post("/v1/query", json={"sql": sql, "mode": "batch", **options})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/query/{response.json()['query_id']}"
    answer: dict[str, Any] = response.json()
    return answer


def finished(stack: Stack, query_id: str, token: str | None = None, timeout_s: float = 90) -> dict[str, Any]:
    def status() -> dict[str, Any] | None:
        with stack.query_client(token) as api:
            body: dict[str, Any] = api.get(f"/v1/query/{query_id}").json()
        return body if body["status"] in TERMINAL else None

    return wait_for(status, timeout_s, f"batch query {query_id} to finish")


def interactive(stack: Stack, sql: str, token: str | None = None) -> dict[str, Any]:
    with stack.query_client(token) as api:
        response = api.post("/v1/query", json={"sql": sql})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


JOIN = "select t.id, t.amount, p.wei from big_trades t join trades_parquet p using (id) order by t.id"


def test_batch_query_joins_parquet_and_postgres_end_to_end(batch_stack: Stack) -> None:
    stack = batch_stack
    stack.deploy((EXAMPLES / "trades.yaml").read_text())
    stack.start_worker()
    stack.wait_jobs_done({"trades": 1, "big_trades": 3, "range_totals": 3})

    queued = submit(stack, JOIN, format="csv")
    assert queued["status"] == "queued" and set(queued["dataset_versions"]) == {"big_trades", "trades_parquet"}
    done = finished(stack, queued["query_id"])
    assert done["status"] == "succeeded", done
    assert done["mode"] == "batch" and done["row_count"] == 6 and done["truncated"] is False
    assert done["columns"] == [
        {"name": "id", "type": "BIGINT"},
        {"name": "amount", "type": "BIGINT"},
        {"name": "wei", "type": "DECIMAL(38,0)"},
    ]
    assert done["result_url"] == f"/v1/query/{queued['query_id']}/result"
    assert {pin["dataset_name"]: pin["dataset_version"] for pin in done["pins"]} == queued["dataset_versions"]

    # it ran as a task of the org's system DAG, through the dispatcher like any other
    [task] = stack.sql(
        """SELECT d.dag_name, d.system, j.operator, t.status, t.attempt_count, t.task_id::text
           FROM tasks t JOIN jobs j USING (job_id) JOIN dags d ON d.dag_id = t.dag_id
           WHERE t.query_id = %(q)s""",
        {"q": queued["query_id"]},
    )
    assert task == {
        "dag_name": "_queries",
        "system": True,
        "operator": "duckdb_query",
        "status": "Completed",
        "attempt_count": done["attempts"],  # 1, unless a loaded machine redelivered it (at least once)
        "task_id": done["task_id"],
    }
    # its result is Parquet in the object store, beside (not inside) the datasets: the completed attempt's file
    [org_id] = [row["org_id"] for row in stack.sql("SELECT org_id FROM orgs WHERE name = 'acme'")]
    results = stack.home / "objects" / "org" / str(org_id) / "query" / queued["query_id"]
    assert (results / f"attempt-{done['attempts']}.parquet").is_file()

    same = interactive(stack, JOIN)
    with stack.query_client() as api:
        as_csv = api.get(done["result_url"])  # the format the query asked for
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(as_csv.text)))
        assert rows[0] == ["id", "amount", "wei"] and len(rows) == 7
        assert rows[1:] == [[str(value) for value in row] for row in same["rows"]]

        first = api.get(done["result_url"], params={"format": "json", "limit": 4}).json()
        assert first["columns"] == same["columns"] and first["rows"] == same["rows"][:4]
        assert (first["offset"], first["next_offset"], first["total_rows"], first["row_count"]) == (0, 4, 6, 4)
        second = api.get(done["result_url"], params={"format": "json", "limit": 4, "offset": 4}).json()
        assert second["rows"] == same["rows"][4:] and second["next_offset"] is None

        arrow = api.get(done["result_url"], params={"format": "arrow", "offset": 2, "limit": 2})
        assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
        assert arrow.headers["x-trace-next-offset"] == "4" and arrow.headers["x-trace-total-rows"] == "6"
        table = pyarrow.ipc.open_stream(arrow.content).read_all()
        assert table.column("id").to_pylist() == [row[0] for row in same["rows"][2:4]]

    with httpx.Client(base_url=stack.query_url) as anonymous:
        assert 'trace_queries_total{outcome="queued"} 1.0' in anonymous.get("/metrics").text

    # `trace query --batch`: submits, waits, prints
    env = {"TRACE_TOKEN": stack.admin_token, "TRACE_QUERY_URL": stack.query_url}
    printed = CliRunner().invoke(cli, ["query", JOIN, "--batch", "--format", "csv"], env=env)
    assert printed.exit_code == 0, printed.output
    assert list(csv.reader(io.StringIO(printed.stdout))) == rows
    as_json = CliRunner().invoke(cli, ["query", JOIN, "--batch", "--format", "json", "--max-rows", "5"], env=env)
    assert as_json.exit_code == 0, as_json.output
    whole = json.loads(as_json.stdout)
    assert whole["rows"] == same["rows"][:5] and whole["truncated"] is True and whole["columns"] == same["columns"]
    failed = CliRunner().invoke(cli, ["query", "select nope from big_trades", "--batch"], env=env)
    assert failed.exit_code == 1 and "batch query failed" in failed.output and "nope" in failed.output


async def test_a_pointer_swap_after_submission_does_not_change_the_result(batch_stack: Stack, db: Conn) -> None:
    stack = batch_stack
    org = await make_org(db, "beta")
    token = _token(org.admin)
    objects = stack.home / "objects"
    numbers, owners = await publish_numbers_and_owners(org, objects)
    sql = "select n.n, o.owner, o.note, o.meta, o.score from numbers n join owners o on o.n = n.n order by n.n"
    before = interactive(stack, sql, token)
    queued = submit(stack, sql, token, format="json")  # no worker yet: the query waits in the queue

    await org.swap("numbers")
    await org.swap("owners")
    write_parquet(objects, org.parquet_key("numbers", 0, 9), {"n": [1, 2]})
    await org.create_table("owners", OWNER_COLUMNS, [(1, "new", None, None, 0, "x")])
    after = interactive(stack, sql, token)
    assert after["rows"] == [[1, "new", None, None, 0.0]]

    stack.start_worker()
    done = finished(stack, queued["query_id"], token)
    assert done["status"] == "succeeded", done
    assert {pin["dataset_name"]: pin["dataset_version"] for pin in done["pins"]} == {
        "numbers": str(numbers),
        "owners": str(owners),
    }
    with stack.query_client(token) as api:
        page = api.get(done["result_url"]).json()
    # the pinned versions, read exactly as the interactive engine reads them: values and types
    assert page["rows"] == before["rows"] and page["columns"] == before["columns"]
    assert page["dataset_versions"] == queued["dataset_versions"] == before["dataset_versions"]


async def test_only_the_owner_or_an_admin_sees_a_batch_query(batch_stack: Stack, db: Conn) -> None:
    stack = batch_stack
    org = await blocks_org(stack, db)
    analyst = await org.user("ann", ["analyst"])
    await org.grant_read("blocks", "analyst")
    queued = submit(stack, "select sum(number) as total from blocks", _token(analyst))
    query_id = queued["query_id"]

    stranger = await org.user("rita", ["reader"])
    other_org = await make_org(db, "other")
    for headers in (stranger, other_org.admin):
        with stack.query_client(_token(headers)) as api:
            for response in (
                api.get(f"/v1/query/{query_id}"),
                api.get(f"/v1/query/{query_id}/result"),
                api.post(f"/v1/query/{query_id}/cancel"),
            ):
                assert response.status_code == 404, response.text
                assert response.json()["detail"] == f"no query {query_id} that you may see"
    with stack.query_client(_token(org.admin)) as api:  # the org's admin
        assert api.get(f"/v1/query/{query_id}").json()["status"] == "queued"

    # a dataset the caller may not read is the same 404 as a missing one (and as interactively), nothing is queued
    for sql in ("select * from blocks", "select * from no_such_dataset"):
        with stack.query_client(_token(stranger)) as api:
            batch = api.post("/v1/query", json={"sql": sql, "mode": "batch"})
            now = api.post("/v1/query", json={"sql": sql})
        assert batch.status_code == now.status_code == 404
        assert batch.json() == now.json() and "that you may read" in batch.json()["detail"]
    assert len(stack.sql("SELECT query_id FROM queries")) == 1
    assert len(stack.sql("SELECT task_id FROM tasks WHERE query_id IS NOT NULL")) == 1

    stack.start_worker()
    done = finished(stack, query_id, _token(analyst))
    assert done["status"] == "succeeded"
    with stack.query_client(_token(analyst)) as api:
        assert api.get(done["result_url"]).json()["rows"] == [[3]]
        for result in (stack.home / "objects" / "org" / str(org.org_id) / "query" / query_id).iterdir():
            result.unlink()
        gone = api.get(done["result_url"])
        assert gone.status_code == 410 and gone.json()["detail"].startswith("the stored result cannot be read")


async def test_failed_sql_timeouts_and_cancel(batch_stack: Stack, db: Conn) -> None:
    stack = batch_stack
    org = await blocks_org(stack, db)
    token = _token(org.admin)

    # canceled while queued: at once, with no worker
    waiting = submit(stack, "select count(*) from blocks", token)
    with stack.query_client(token) as api:
        canceled = api.post(f"/v1/query/{waiting['query_id']}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "Canceled"
        assert api.get(f"/v1/query/{waiting['query_id']}").json()["status"] == "canceled"
        again = api.post(f"/v1/query/{waiting['query_id']}/cancel")
        assert again.status_code == 409 and "already canceled" in again.json()["detail"]
        not_ready = api.get(f"/v1/query/{waiting['query_id']}/result")
        assert not_ready.status_code == 409 and "no result" in not_ready.json()["detail"]

    stack.start_worker()
    with stack.query_client(token) as api:
        interactive_error = api.post("/v1/query", json={"sql": "select nope from blocks"}).json()["detail"]
    bad = finished(stack, submit(stack, "select nope from blocks", token)["query_id"], token)
    assert bad["status"] == "failed" and bad["error"] == interactive_error and "Binder Error" in bad["error"]
    assert bad["row_count"] is None and bad["result_url"] is None
    assert_not_retried(stack, bad)

    slow_sql = "select count(*) from blocks, range(100000000000) r(i)"
    slow = finished(stack, submit(stack, slow_sql, token, timeout_s=0.5)["query_id"], token)
    assert slow["status"] == "failed" and "timeout_s=0.5" in slow["error"]
    assert_not_retried(stack, slow)

    running = submit(stack, slow_sql, token)
    query_id = running["query_id"]
    with stack.query_client(token) as api:
        wait_for(lambda: api.get(f"/v1/query/{query_id}").json()["status"] == "running", 60, "the query to run")
        assert api.post(f"/v1/query/{query_id}/cancel").json()["status"] == "Running"  # told at its next heartbeat
    assert finished(stack, query_id, token)["status"] == "canceled"
    [task] = stack.sql("SELECT status FROM tasks WHERE query_id = %(q)s", {"q": query_id})
    assert task["status"] == "Canceled"


def assert_not_retried(stack: Stack, query: dict[str, Any]) -> None:
    """The query's task failed on its last attempt's error with attempts to spare: an error of the query itself is
    not retried. (Its first attempt may have been superseded by a redelivery on a loaded machine: at least once.)"""
    [task] = stack.sql(
        """SELECT t.status, t.attempt_count, t.max_attempts, a.status AS attempt_status, a.error
           FROM tasks t JOIN task_attempts a ON a.task_id = t.task_id AND a.attempt_number = t.attempt_count
           WHERE t.query_id = %(q)s""",
        {"q": query["query_id"]},
    )
    assert task["status"] == "Failed" and task["attempt_status"] == "Failed" and task["error"] == query["error"]
    assert task["attempt_count"] < task["max_attempts"]


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def blocks_org(stack: Stack, db: Conn) -> Org:
    """An org (not the stack's) with `blocks`, a Parquet dataset of three rows."""
    org = await make_org(db, "beta")
    await org.publish("blocks", "s3")
    write_parquet(stack.home / "objects", org.parquet_key("blocks", 0, 2), {"number": [0, 1, 2]})
    return org


OWNER_COLUMNS = "n bigint, owner text, note text, meta jsonb, score numeric"


async def publish_numbers_and_owners(org: Org, objects: Path) -> tuple[UUID, UUID]:
    await org.publish("numbers", "s3")
    write_parquet(objects, org.parquet_key("numbers", 0, 9), {"n": [1, 2, 3]})
    await org.publish("owners", "postgres")
    await org.create_table(
        "owners",
        OWNER_COLUMNS,
        [
            (1, "ann", "", '{"tags": ["a", "b"]}', 10**21, "0_9"),
            (2, "bob", None, None, 1.5, "0_9"),
            (3, "cy", 'two\nlines, "quoted"', "[1, 2]", None, "0_9"),
        ],
    )
    return org.datasets["numbers"].version, org.datasets["owners"].version


@pytest.fixture
def s3_stack(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, str]]:
    """A stack (dispatcher, Query Service, one worker) whose object store is a bucket of moto's server."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="trace-objects")
        env = {**AWS_ENV, "TRACE_OBJECT_STORE": "s3://trace-objects/data", "TRACE_AWS_ENDPOINT_URL": endpoint}
        with running_stack(database_url, tmp_path / "stack", env) as stack:
            stack.start_dispatcher()
            stack.start_query_service()
            stack.start_worker(concurrency=1)
            yield stack, endpoint


async def test_batch_query_on_s3(s3_stack: tuple[Stack, str], tmp_path: Path, db: Conn) -> None:
    """The wrapper stages the pinned Parquet from the bucket and stores the result there; the Query Service reads
    its pages through httpfs. The operator child holds no AWS key: it reads only what was staged for it."""
    stack, endpoint = s3_stack
    org = await make_org(db, "beta")
    token = _token(org.admin)
    await org.publish("blocks", "s3")
    local = tmp_path / "blocks.parquet"
    pq.write_table(pa.table({"number": [1, 2, 3]}), local)
    store = S3ObjectStore("s3://trace-objects/data", region="us-east-1", endpoint_url=endpoint)
    try:
        await store.put_file(org.parquet_key("blocks", 1, 3), local)
        await org.publish("owners", "postgres")
        await org.create_table("owners", "n bigint, owner text", [(2, "ann", "1_3"), (3, "bob", "1_3")])
        sql = "select b.number, o.owner from blocks b left join owners o on o.n = b.number order by 1"
        done = finished(stack, submit(stack, sql, token)["query_id"], token)
        assert done["status"] == "succeeded", done
        with stack.query_client(token) as api:
            page = api.get(done["result_url"]).json()
        assert page["rows"] == interactive(stack, sql, token)["rows"] == [[1, None], [2, "ann"], [3, "bob"]]
        prefix = f"org/{org.org_id}/query/{done['query_id']}"
        assert f"{prefix}/attempt-{done['attempts']}.parquet" in await store.list_keys(prefix)
    finally:
        await store.close()
