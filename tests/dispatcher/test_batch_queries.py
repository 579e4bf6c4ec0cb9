"""The dispatcher's side of batch queries: queue (pins and task in one transaction, one system DAG per org), the
task payload, the pinned Postgres rows a worker reads, the result it records, and the query following its task."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from typing import Any

import httpx

from tests.dispatcher.test_worker_contract import call, fetch
from tests.query.registry import Org, make_org, write_parquet
from tests.support.rows import Conn
from tests.support.stack import Stack, wait_for


async def batch_org(stack: Stack, db: Conn) -> tuple[Org, dict[str, Any]]:
    """An org with `numbers` (Parquet) and `owners` (Postgres), and the caller fields of its admin."""
    org = await make_org(db, "beta")
    await org.publish("numbers", "s3")
    write_parquet(stack.home / "objects", org.parquet_key("numbers", 0, 9), {"n": [1, 2]})
    await org.publish("owners", "postgres")
    await org.create_table(
        "owners",
        "n bigint, owner text, note text, meta jsonb",
        [(1, "ann", "", '{"a": 1}', "0_9"), (2, None, 'x\n"y"', None, "0_9")],
    )
    [admin] = stack.sql("SELECT user_id::text FROM users WHERE org_id = %(o)s", {"o": org.org_id})
    return org, {"org_id": str(org.org_id), "user_id": admin["user_id"], "is_admin": True}


def request(caller: dict[str, Any], sql: str, names: list[str]) -> dict[str, Any]:
    return {**caller, "sql": sql, "dataset_names": names, "max_rows": 100, "timeout_s": 60, "format": "json"}


def take(internal: httpx.Client, count: int) -> list[str]:
    """`count` dispatched task ids, taken from the embedded transport as a worker would."""
    taken: list[str] = []

    def poll() -> bool:
        answer = internal.post("/internal/task-poll", json={"runtime": "ecs_python", "worker_id": "t", "wait_s": 1})
        taken.extend(answer.json()["task_ids"])
        return len(taken) >= count

    wait_for(poll, 20, f"{count} dispatched task(s)")
    return taken


def query_row(stack: Stack, query_id: str) -> dict[str, Any]:
    [row] = stack.sql(
        "SELECT status, error, row_count, result_location, started_at, finished_at FROM queries WHERE query_id = %(q)s",
        {"q": query_id},
    )
    return row


async def test_queue_pin_and_serve_a_batch_query(stack: Stack, db: Conn) -> None:
    org, caller = await batch_org(stack, db)
    sql = "select * from numbers join owners using (n)"
    async with httpx.AsyncClient(
        base_url=stack.dispatcher_url, headers={"Authorization": f"Bearer {stack.service_token}"}
    ) as internal_async:
        # an org's first batch queries, at once: one system DAG, one task each (many live tasks of one job)
        body = request(caller, sql, ["numbers", "owners"])
        first, second = await asyncio.gather(*(internal_async.post("/internal/batch-queries", json=body) for _ in "ab"))
    assert first.status_code == second.status_code == 201, first.text + second.text
    assert stack.sql("SELECT dag_name FROM dags WHERE system AND org_id = %(o)s", {"o": org.org_id}) == [
        {"dag_name": "_queries"}
    ]
    queued = stack.sql("SELECT status, query_id::text FROM tasks WHERE query_id IS NOT NULL")
    assert sorted(row["query_id"] for row in queued) == sorted([first.json()["query_id"], second.json()["query_id"]])
    assert [pin["dataset_name"] for pin in first.json()["pins"]] == ["numbers", "owners"]

    with stack.internal() as internal:
        missing = internal.post("/internal/batch-queries", json=request(caller, sql, ["numbers", "nope"]))
        assert missing.status_code == 404 and missing.json()["extra"] == {"dataset": "nope"}
        assert len(stack.sql("SELECT query_id FROM queries")) == 2  # nothing recorded

        with stack.client(org.admin["Authorization"].removeprefix("Bearer ")) as public:
            assert [dag["dag_name"] for dag in public.get("/v1/dags").json()] == ["eth"]
            assert {t["dag_name"] for t in public.get("/v1/tasks").json()["tasks"]} == {"_queries"}  # an admin's view
            reader = await org.user("rita", ["reader"])
        [some_task] = stack.sql("SELECT task_id::text FROM tasks WHERE query_id IS NOT NULL LIMIT 1")
        with stack.client(reader["Authorization"].removeprefix("Bearer ")) as public:
            # a reader sees no batch query's task: its error would quote another user's SQL
            assert public.get("/v1/tasks").json()["tasks"] == []
            assert public.get(f"/v1/tasks/{some_task['task_id']}").status_code == 404

        ids = take(internal, 2)
        payloads = [fetch(internal, task_id) for task_id in ids]
        payload = next(p for p in payloads if p["query"]["query_id"] == first.json()["query_id"])
        other = next(p for p in payloads if p is not payload)
        assert payload["job"]["operator"] == "duckdb_query" and payload["dag_name"] == "_queries"
        assert payload["outputs"] == [] and payload["input_event"] is None
        query = payload["query"]
        assert (query["sql"], query["max_rows"], query["timeout_s"]) == (sql, 100, 60)
        pins = {pin["dataset_name"]: pin for pin in query["datasets"]}
        assert pins["numbers"]["storage"] == "s3" and pins["numbers"]["location"].startswith(f"org/{org.org_id}/")
        assert pins["owners"]["storage"] == "postgres" and pins["owners"]["location"].startswith("trace_data.ds_")
        assert query_row(stack, query["query_id"])["status"] == "Running"

        # the pinned Postgres rows, as CSV: NULL unquoted-empty, an empty string quoted
        rows = internal.post("/internal/query-input", json=call(payload, dataset_uuid=pins["owners"]["dataset_uuid"]))
        assert rows.status_code == 200 and rows.headers["content-type"].startswith("text/csv")
        assert json.loads(rows.headers["x-trace-columns"]) == [
            {"name": "n", "type": "bigint"},
            {"name": "owner", "type": "text"},
            {"name": "note", "type": "text"},
            {"name": "meta", "type": "jsonb"},
        ]
        assert rows.text == '1,ann,"","{""a"": 1}"\n2,,"x\n""y""",\n'
        assert list(csv.reader(io.StringIO(rows.text))) == [["1", "ann", "", '{"a": 1}'], ["2", "", 'x\n"y"', ""]]
        for dataset_uuid, says in (
            (pins["numbers"]["dataset_uuid"], "is Parquet in the object store"),
            (str(uuid.uuid4()), "is not a dataset this task's query pinned"),
        ):
            refused = internal.post("/internal/query-input", json=call(payload, dataset_uuid=dataset_uuid))
            assert refused.status_code == 400 and refused.json()["detail"].startswith("dataset_uuid: ")
            assert says in refused.json()["detail"]

        result = {"row_count": 2, "truncated": False, "columns": [{"name": "n", "type": "BIGINT"}]}
        elsewhere = call(payload, location="org/x/dataset/y.parquet", **result)
        outside = internal.post("/internal/query-result", json=elsewhere)
        assert outside.status_code == 400 and outside.json()["detail"].startswith("location: ")
        key = f"org/{org.org_id}/query/{query['query_id']}/attempt-1.parquet"
        recorded = internal.post("/internal/query-result", json=call(payload, location=key, **result))
        assert recorded.status_code == 200 and recorded.json() == {"query_id": query["query_id"]}
        assert query_row(stack, query["query_id"])["status"] == "Running"  # until its task completes
        internal.post("/internal/task-complete", json=call(payload, status="succeeded")).raise_for_status()
        done = query_row(stack, query["query_id"])
        assert (done["status"], done["row_count"], done["result_location"]) == ("Completed", 2, key)
        assert done["started_at"] is not None and done["finished_at"] is not None

        # the other query: a retryable failure puts it back in the queue, with the reason
        failed = call(other, status="failed", error="the worker lost its disk", retryable=True)
        assert internal.post("/internal/task-complete", json=failed).json()["task_status"] == "Queued"
        retried = query_row(stack, other["query"]["query_id"])
        assert (retried["status"], retried["error"]) == ("Queued", "the worker lost its disk")
        assert retried["finished_at"] is None
        [again] = take(internal, 1)
        second_attempt = fetch(internal, again)
        assert second_attempt["attempt_number"] == 2
        # a task that completes without recording a result fails its query
        internal.post("/internal/task-complete", json=call(second_attempt, status="succeeded")).raise_for_status()
        empty = query_row(stack, other["query"]["query_id"])
        assert (empty["status"], empty["error"]) == ("Failed", "the task completed without recording a result")
