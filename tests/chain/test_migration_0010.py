"""Migration 0010 moves already-deployed range_aggregator and range_splitter jobs into the dispatcher: their jobs
and unfinished tasks take the runtime `dispatcher`, a running attempt ends, dispatched tasks leave the transport and
give their slots back, a task asked to stop is Canceled, finished tasks and other jobs stay as they were; then the
dispatcher's loop finishes the aggregator's work from its stored state, emitting each manifest once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.loops import Loops
from tests.support.rows import Conn, make_graph, one
from trace_core.db.migrate import migrate_url

BEFORE = 9  # the newest migration before 0010
NOW = datetime.now(UTC)


async def _old_deploy(conn: Conn) -> dict[str, Any]:
    """What a release before 0010 left: blocks (a source) -> ranges (range_aggregator, on the worker pool `rpc`)
    -> units (range_splitter); block 0 counted, blocks 1..4 in tasks Running, Dispatched, Queued and Queued; a
    splitter task Running and asked to stop."""
    graph = await make_graph(conn)
    ids: dict[str, Any] = {"graph": graph}

    async def job(name: str, operator: str, config: dict[str, Any], pool: str | None) -> UUID:
        job_id: UUID = await one(
            conn,
            """INSERT INTO jobs (org_id, dag_id, job_name, activation, runtime, operator, config, execution_strategy,
                                 update_strategy, materialization_hash, created_in_version_id)
               VALUES (%(o)s, %(d)s, %(n)s, 'reactive', 'ecs_python', %(op)s, %(c)s, 'PerUpdate', 'replace',
                       sha256(convert_to(%(n)s::text, 'UTF8')), %(v)s) RETURNING job_id""",
            {
                "o": graph.org_id,
                "d": graph.dag_id,
                "n": name,
                "op": operator,
                "c": Jsonb(config),
                "v": graph.dag_version_id,
            },
        )
        await conn.execute(
            """INSERT INTO dag_version_jobs (dag_version_id, dag_id, job_name, job_id, worker_pool, timeout_s,
                                             max_attempts)
               VALUES (%(v)s, %(d)s, %(n)s, %(j)s, %(p)s, 60, 2)""",
            {"v": graph.dag_version_id, "d": graph.dag_id, "n": name, "j": job_id, "p": pool},
        )
        return job_id

    async def output(job_id: UUID, name: str) -> tuple[UUID, UUID]:
        dataset: UUID = await one(
            conn,
            """INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage)
               VALUES (%(o)s, %(d)s, %(n)s, 0, 'none') RETURNING dataset_uuid""",
            {"o": graph.org_id, "d": graph.dag_id, "n": name},
        )
        version: UUID = await one(
            conn,
            """INSERT INTO dataset_versions (org_id, dataset_uuid, job_id) VALUES (%(o)s, %(ds)s, %(j)s)
               RETURNING dataset_version""",
            {"o": graph.org_id, "ds": dataset, "j": job_id},
        )
        return dataset, version

    async def event(dataset: tuple[UUID, UUID], producer: UUID, start: int, end: int, key: str | None) -> int:
        event_id: int = await one(
            conn,
            """INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, scope_cursor, partition_key,
                                   range_start, range_end, scope_key, producer_task_id)
               VALUES (%(o)s, %(ds)s, %(dv)s, 'data', %(c)s, %(k)s, %(s)s, %(e)s, %(c)s || coalesce(%(k)s, ''), %(t)s)
               RETURNING event_id""",
            {
                "o": graph.org_id,
                "ds": dataset[0],
                "dv": dataset[1],
                "c": f"0:h{start}",
                "k": key,
                "s": start,
                "e": end,
                "t": producer,
            },
        )
        return event_id

    async def task(job_id: UUID, event_id: int, status: str, **columns: Any) -> UUID:
        task_id: UUID = await one(
            conn,
            """INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, input_event_id, runtime, status,
                                  attempt_count, max_attempts, dispatched_at, finished_at, cancel_requested_at)
               VALUES (%(o)s, %(d)s, %(v)s, %(j)s, %(e)s, 'ecs_python', %(s)s, %(a)s, 2, %(da)s, %(f)s, %(c)s)
               RETURNING task_id""",
            {
                "o": graph.org_id,
                "d": graph.dag_id,
                "v": graph.dag_version_id,
                "j": job_id,
                "e": event_id,
                "s": status,
                "a": columns.get("attempts", 0),
                "da": columns.get("dispatched_at"),
                "f": columns.get("finished_at"),
                "c": columns.get("cancel_requested_at"),
            },
        )
        return task_id

    async def attempt(task_id: UUID, status: str) -> None:
        await conn.execute(
            """INSERT INTO task_attempts (task_id, attempt_number, attempt_token_hash, status, lease_expires_at,
                                          worker_id, finished_at)
               VALUES (%(t)s, 1, sha256('token'), %(s)s, now() + interval '1 minute', 'old-worker',
                       CASE WHEN %(s)s <> 'Running' THEN now() END)""",
            {"t": task_id, "s": status},
        )

    async with conn.transaction():
        blocks = (graph.dataset_uuid, graph.dataset_version)
        ids["ranges"] = ranges = await job("ranges", "range_aggregator", {"range_size": 4}, "rpc")
        ids["units"] = units = await job("units", "range_splitter", {}, None)
        manifests = await output(ranges, "ranges")
        await output(units, "units")
        for reader, dataset, upstream in ((ranges, blocks, graph.job_id), (units, manifests, ranges)):
            await conn.execute(
                "INSERT INTO job_inputs (job_id, input_index, dataset_uuid, upstream_job_id) VALUES (%s, 0, %s, %s)",
                (reader, dataset[0], upstream),
            )
        block_events = [await event(blocks, graph.task_id, n, n, None) for n in range(5)]
        slot = await one(
            conn,
            """INSERT INTO worker_pool_slots (org_id, dag_id, pool_name, slot_index) VALUES (%(o)s, %(d)s, 'rpc', 0)
               RETURNING slot_id""",
            {"o": graph.org_id, "d": graph.dag_id},
        )
        other_slot = await one(
            conn,
            """INSERT INTO worker_pool_slots (org_id, dag_id, pool_name, slot_index) VALUES (%(o)s, %(d)s, 'rpc', 1)
               RETURNING slot_id""",
            {"o": graph.org_id, "d": graph.dag_id},
        )
        ids["done"] = await task(ranges, block_events[0], "Completed", attempts=1, finished_at=NOW)
        await attempt(ids["done"], "Succeeded")
        await conn.execute(
            """INSERT INTO operator_state (org_id, job_id, state, updated_by_task_id)
               VALUES (%(o)s, %(j)s, %(s)s, %(t)s)""",
            {
                "o": graph.org_id,
                "j": ranges,
                "s": Jsonb({"next_block": 1, "first_range": 0, "dirty": []}),
                "t": ids["done"],
            },
        )
        ids["running"] = await task(ranges, block_events[1], "Running", attempts=1, dispatched_at=NOW)
        await attempt(ids["running"], "Running")
        ids["dispatched"] = await task(ranges, block_events[2], "Dispatched", dispatched_at=NOW)
        for task_id, slot_id in ((ids["running"], slot), (ids["dispatched"], other_slot)):
            await conn.execute(
                "INSERT INTO slot_leases (slot_id, task_id, expires_at) VALUES (%s, %s, now() + interval '1 minute')",
                (slot_id, task_id),
            )
        await conn.execute(
            "INSERT INTO transport_queue (task_id, runtime) VALUES (%s, 'ecs_python')", (ids["dispatched"],)
        )
        ids["queued"] = [await task(ranges, e, "Queued") for e in block_events[3:]]
        earlier_manifest = await event(manifests, ids["done"], 0, 3, "0_3")
        ids["stopping"] = await task(
            units, earlier_manifest, "Running", attempts=1, dispatched_at=NOW, cancel_requested_at=NOW
        )
        await attempt(ids["stopping"], "Running")
    return ids


def test_0010_moves_deployed_aggregators_and_splitters_into_the_dispatcher(empty_database_url: str) -> None:
    url = empty_database_url
    assert 10 not in [m.number for m in asyncio.run(migrate_url(url, through=BEFORE))]

    async def deploy_old() -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return await _old_deploy(conn)

    ids = asyncio.run(deploy_old())
    assert 10 in [m.number for m in asyncio.run(migrate_url(url))]  # with the newer ones

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:

        def rows(query: str, *params: Any) -> list[dict[str, Any]]:
            return conn.execute(query.encode(), params).fetchall()

        jobs = {r["job_name"]: r["runtime"] for r in rows("SELECT job_name, runtime FROM jobs")}
        assert jobs == {"blocks": "ecs_python", "ranges": "dispatcher", "units": "dispatcher"}
        assert rows("SELECT job_name FROM dag_version_jobs WHERE worker_pool IS NOT NULL") == []
        tasks = {
            r["task_id"]: r
            for r in rows("SELECT task_id, runtime, status, attempt_count, max_attempts, dispatched_at FROM tasks")
        }
        assert (tasks[ids["done"]]["runtime"], tasks[ids["done"]]["status"]) == ("ecs_python", "Completed")
        for task_id in (ids["running"], ids["dispatched"], *ids["queued"]):
            assert (tasks[task_id]["runtime"], tasks[task_id]["status"]) == ("dispatcher", "Queued")
            assert tasks[task_id]["dispatched_at"] is None
        assert tasks[ids["running"]]["max_attempts"] == 2  # its one attempt used, one left for the dispatcher
        assert (tasks[ids["stopping"]]["runtime"], tasks[ids["stopping"]]["status"]) == ("dispatcher", "Canceled")
        ended = rows("SELECT task_id, status, error FROM task_attempts WHERE worker_id = 'old-worker' ORDER BY 1")
        assert {(r["task_id"], r["status"]) for r in ended} == {
            (ids["done"], "Succeeded"),
            (ids["running"], "Failed"),
            (ids["stopping"], "Failed"),
        }
        assert all("migration 0010" in r["error"] for r in ended if r["status"] == "Failed")
        assert rows("SELECT task_id FROM slot_leases") == [] and rows("SELECT task_id FROM transport_queue") == []

    # the dispatcher takes over from the stored state: blocks 1..4 counted once, range 0_3 emitted once
    with Loops.running(url) as loops:
        assert loops.operators() == 4
        assert loops.operators() == 0
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        [state] = conn.execute("SELECT state FROM operator_state").fetchall()
        assert state["state"] == {"next_block": 5, "first_range": 0, "dirty": []}
        produced = conn.execute(
            """SELECT e.partition_key, e.kind FROM events e JOIN tasks t ON t.task_id = e.producer_task_id
               JOIN jobs j USING (job_id) WHERE j.job_name = 'ranges' AND t.runtime = 'dispatcher'"""
        ).fetchall()
        assert produced == [{"partition_key": "0_3", "kind": "data"}]
        attempts = conn.execute(
            "SELECT attempt_number, status, worker_id FROM task_attempts WHERE task_id = %s ORDER BY 1",
            (ids["running"],),
        ).fetchall()
        assert [(a["status"], a["worker_id"]) for a in attempts] == [
            ("Failed", "old-worker"),
            ("Succeeded", "dispatcher"),
        ]
