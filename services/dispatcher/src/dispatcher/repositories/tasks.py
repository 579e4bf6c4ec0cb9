"""SQL of tasks, attempts, events and the embedded transport queue."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from trace_core.contracts.events import EmittedEvent
from trace_core.db.pool import Connection
from trace_core.db.queries import Pending, Row, fetch_all, fetch_one, load_queries, send_all

Q = load_queries("dispatcher.repositories", "tasks.sql")


async def _one(conn: Connection, name: str, params: dict[str, Any]) -> Row | None:
    return await fetch_one(conn, Q[name], params)


async def _all(conn: Connection, name: str, params: dict[str, Any]) -> list[Row]:
    return await fetch_all(conn, Q[name], params)


async def insert_source_run(conn: Connection, **params: Any) -> UUID | None:
    row = await _one(conn, "insert_source_run", params)
    return None if row is None else UUID(str(row["task_id"]))


async def latest_source_run(conn: Connection, job_id: UUID) -> Row | None:
    return await _one(conn, "latest_source_run", {"job_id": job_id})


async def reopen_source_run(conn: Connection, task_id: UUID, max_attempts: int) -> None:
    await conn.execute(Q["reopen_source_run"], {"task_id": task_id, "max_attempts": max_attempts})


async def source_job(conn: Connection, org_id: UUID, dag_name: str, job_name: str) -> Row | None:
    return await _one(conn, "source_job", {"org_id": org_id, "dag_name": dag_name, "job_name": job_name})


async def route_events(conn: Connection, limit: int, applying: bool) -> tuple[int, int, list[Row]]:
    """One router pass (in a transaction): events routed, tasks queued and, when `applying`, the tasks of the
    dispatcher's own operators for the pass to apply (inserted Completed with their attempt; by job, in event
    order)."""
    await conn.execute(Q["plan_router_pass"])
    rows = await _all(conn, "route_events", {"limit": limit, "applying": applying})
    return int(rows[0]["events"]), int(rows[0]["tasks"]), [row for row in rows if row["job_id"] is not None]


async def amend_applied_tasks(conn: Connection, amends: list[tuple[UUID, str | None]]) -> None:
    """Tasks `route_events` inserted Completed that did not complete: `(task_id, error)` fails the task and its
    attempt, `(task_id, None)` puts it back in the queue, without an attempt."""
    if amends:
        params = {"task_ids": [task_id for task_id, _ in amends], "errors": [error for _, error in amends]}
        await conn.execute(Q["amend_applied_tasks"], params)


async def dispatch_ready_tasks(
    conn: Connection, runtime: str, limit: int, inflight_limit: int, dispatch_timeout_s: float, embedded: bool
) -> list[Row]:
    params = {
        "runtime": runtime,
        "limit": limit,
        "inflight_limit": inflight_limit,
        "dispatch_timeout_s": dispatch_timeout_s,
        "embedded": embedded,
    }
    return await _all(conn, "dispatch_ready_tasks", params)


async def undispatch(conn: Connection, task_ids: list[UUID]) -> int:
    """Dispatched tasks back to the queue; returns how many were still dispatched."""
    row = await _one(conn, "undispatch", {"task_ids": task_ids})
    return 0 if row is None else int(row["n"])


async def take_from_transport_queue(conn: Connection, runtime: str, limit: int) -> list[UUID]:
    rows = await _all(conn, "take_from_transport_queue", {"runtime": runtime, "limit": limit})
    return [row["task_id"] for row in rows]


async def extend_lease(conn: Connection, attempt_id: UUID, lease_expires_at: datetime) -> datetime:
    row = await _one(conn, "extend_lease", {"attempt_id": attempt_id, "lease_expires_at": lease_expires_at})
    assert row is not None
    expires: datetime = row["lease_expires_at"]
    return expires


async def reap_expired_attempts(conn: Connection, base_s: float, max_s: float) -> dict[str, int]:
    rows = await _all(conn, "reap_expired_attempts", {"base_s": base_s, "max_s": max_s})
    return {row["status"]: int(row["n"]) for row in rows}


async def requeue_stale_dispatches(conn: Connection, dispatch_timeout_s: float) -> int:
    row = await _one(conn, "requeue_stale_dispatches", {"dispatch_timeout_s": dispatch_timeout_s})
    return 0 if row is None else int(row["n"])


async def release_orphan_leases(conn: Connection) -> int:
    return len(await _all(conn, "release_orphan_leases", {}))


async def request_cancel(conn: Connection, task_id: UUID) -> Row | None:
    return await _one(conn, "request_cancel", {"task_id": task_id})


async def mark_cancel_requested(conn: Connection, task_id: UUID) -> None:
    await conn.execute(Q["mark_cancel_requested"], {"task_id": task_id})


async def list_tasks(conn: Connection, **params: Any) -> list[Row]:
    return await _all(conn, "list_tasks", params)


async def task_detail(conn: Connection, org_id: UUID, task_id: UUID, is_admin: bool) -> Row | None:
    return await _one(conn, "task_detail", {"org_id": org_id, "task_id": task_id, "is_admin": is_admin})


async def task_counts(conn: Connection) -> list[Row]:
    return await _all(conn, "task_counts", {})


async def ready_depth(conn: Connection) -> list[Row]:
    return await _all(conn, "ready_depth", {})


async def restart_running_source_run(conn: Connection, task_id: UUID, max_attempts: int) -> None:
    await conn.execute(Q["restart_running_source_run"], {"task_id": task_id, "max_attempts": max_attempts})


async def lock_tasks(conn: Connection, task_ids: list[UUID]) -> list[Row]:
    return await _all(conn, "lock_tasks", {"task_ids": task_ids})


async def cancel_tasks(conn: Connection, task_ids: list[UUID]) -> None:
    await conn.execute(Q["cancel_tasks"], {"task_ids": task_ids})


async def start_attempts(
    conn: Connection, starts: list[tuple[UUID, int, bytes, str | None, float]]
) -> Pending[dict[UUID, Row]]:
    """New attempts `(task_id, attempt_number, token_hash, worker_id, lease_s)`, superseding ones still running;
    each task's new attempt row, by task id."""
    superseding = [start[0] for start in starts if start[1] > 1]
    if superseding:
        await conn.execute(Q["supersede_running_attempts"], {"task_ids": superseding})
    params = {
        "task_ids": [s[0] for s in starts],
        "numbers": [s[1] for s in starts],
        "token_hashes": [s[2] for s in starts],
        "worker_ids": [s[3] for s in starts],
        "leases_s": [s[4] for s in starts],
    }
    return await send_all(conn, Q["start_attempts"], params, _by_task)


async def task_payloads(conn: Connection, task_ids: list[UUID]) -> Pending[dict[UUID, Row]]:
    """What a worker needs to run each task, by task id."""
    return await send_all(conn, Q["task_payloads"], {"task_ids": task_ids}, _by_task)


def _by_task(rows: list[Row]) -> dict[UUID, Row]:
    return {row["task_id"]: row for row in rows}


async def gate_attempts(conn: Connection, task_ids: list[UUID]) -> list[Row]:
    return await _all(conn, "gate_attempts", {"task_ids": task_ids})


async def insert_events(
    conn: Connection, emitted: list[tuple[UUID, UUID, EmittedEvent]]
) -> dict[UUID, tuple[int, int]]:
    """Store `(task_id, attempt_id, event)`s; per task: (stored now, already stored before)."""
    return await (await send_insert_events(conn, emitted)).result()


async def send_insert_events(
    conn: Connection, emitted: list[tuple[UUID, UUID, EmittedEvent]]
) -> Pending[dict[UUID, tuple[int, int]]]:
    """`insert_events`, its counts read later (see `Pending`)."""
    if not emitted:
        return Pending.of({})
    params: dict[str, Any] = {
        "task_ids": [task_id for task_id, _, _ in emitted],
        "producer_ids": list({task_id for task_id, _, _ in emitted}),
        "attempt_ids": [attempt_id for _, attempt_id, _ in emitted],
        "outputs": [e.output for _, _, e in emitted],
        "kinds": [e.kind.value for _, _, e in emitted],
        "cursors": [e.scope.cursor for _, _, e in emitted],
        "partition_keys": [e.scope.partition_key for _, _, e in emitted],
        "range_starts": [e.scope.range.start if e.scope.range else None for _, _, e in emitted],
        "range_ends": [e.scope.range.end if e.scope.range else None for _, _, e in emitted],
        "scope_keys": [e.scope.key for _, _, e in emitted],
        # JSON text, cast in SQL: most payloads are empty, and a Jsonb parameter costs a json.dumps per element
        "payloads": [json.dumps(e.payload) if e.payload else "{}" for _, _, e in emitted],
    }
    return await send_all(conn, Q["insert_events_of_tasks"], params, _event_counts)


def _event_counts(rows: list[Row]) -> dict[UUID, tuple[int, int]]:
    return {row["task_id"]: (int(row["inserted"]), int(row["matched"]) - int(row["inserted"])) for row in rows}


async def finish_attempts(
    conn: Connection, finishes: list[tuple[UUID, UUID, str, str, str | None]], base_s: float, max_s: float
) -> Pending[dict[UUID, datetime | None]]:
    """Close `(task_id, attempt_id, attempt_status, task_status, error)`s; returns each task's retry time."""
    params = {
        "task_ids": [f[0] for f in finishes],
        "attempt_ids": [f[1] for f in finishes],
        "attempt_statuses": [f[2] for f in finishes],
        "task_statuses": [f[3] for f in finishes],
        "errors": [f[4] for f in finishes],
        "base_s": base_s,
        "max_s": max_s,
    }
    return await send_all(conn, Q["finish_attempts"], params, _retry_times)


def _retry_times(rows: list[Row]) -> dict[UUID, datetime | None]:
    return {row["task_id"]: row["retry_at"] for row in rows}
