"""SQL of tasks, attempts, events and the embedded transport queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from trace_core.contracts.events import EmittedEvent
from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_all, fetch_one, load_queries

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


async def route_events(conn: Connection, limit: int) -> tuple[int, int]:
    row = await _one(conn, "route_events", {"limit": limit})
    assert row is not None
    return int(row["events"]), int(row["tasks"])


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


async def undispatch(conn: Connection, task_ids: list[UUID]) -> None:
    await conn.execute(Q["undispatch"], {"task_ids": task_ids})


async def take_from_transport_queue(conn: Connection, runtime: str, limit: int) -> list[UUID]:
    rows = await _all(conn, "take_from_transport_queue", {"runtime": runtime, "limit": limit})
    return [row["task_id"] for row in rows]


async def lock_task(conn: Connection, task_id: UUID) -> Row | None:
    return await _one(conn, "lock_task", {"task_id": task_id})


async def start_attempt(conn: Connection, **params: Any) -> Row:
    """A new attempt, superseding one still running."""
    if params["attempt_number"] > 1:
        await conn.execute(
            Q["supersede_running_attempt"], {"task_id": params["task_id"], "attempt_number": params["attempt_number"]}
        )
    row = await _one(conn, "start_attempt", params)
    assert row is not None
    return row


async def cancel_dispatched(conn: Connection, task_id: UUID) -> None:
    await conn.execute(Q["cancel_dispatched"], {"task_id": task_id})


async def task_payload(conn: Connection, task_id: UUID) -> Row | None:
    return await _one(conn, "task_payload", {"task_id": task_id})


async def gate_attempt(conn: Connection, task_id: UUID) -> Row | None:
    return await _one(conn, "gate_attempt", {"task_id": task_id})


async def extend_lease(conn: Connection, attempt_id: UUID, lease_expires_at: datetime) -> datetime:
    row = await _one(conn, "extend_lease", {"attempt_id": attempt_id, "lease_expires_at": lease_expires_at})
    assert row is not None
    expires: datetime = row["lease_expires_at"]
    return expires


async def insert_events(
    conn: Connection, org_id: UUID, task_id: UUID, attempt_id: UUID, events: list[EmittedEvent]
) -> tuple[int, int]:
    """Store emitted events; returns (stored now, already stored before)."""
    if not events:
        return 0, 0
    params: dict[str, Any] = {
        "org_id": org_id,
        "task_id": task_id,
        "attempt_id": attempt_id,
        "outputs": [e.output for e in events],
        "kinds": [e.kind.value for e in events],
        "cursors": [e.scope.cursor for e in events],
        "partition_keys": [e.scope.partition_key for e in events],
        "range_starts": [e.scope.range.start if e.scope.range else None for e in events],
        "range_ends": [e.scope.range.end if e.scope.range else None for e in events],
        "scope_keys": [e.scope.key for e in events],
        "payloads": [Jsonb(e.payload) for e in events],
    }
    row = await _one(conn, "insert_events", params)
    assert row is not None
    inserted = int(row["inserted"])
    return inserted, int(row["matched"]) - inserted


async def retry_at(conn: Connection, attempt: int, base_s: float, max_s: float) -> datetime:
    row = await _one(conn, "retry_at", {"attempt": attempt, "base_s": base_s, "max_s": max_s})
    assert row is not None
    at: datetime = row["retry_at"]
    return at


async def finish_attempt(conn: Connection, **params: Any) -> None:
    await conn.execute(Q["finish_attempt"], params)


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


async def cancel_now(conn: Connection, task_id: UUID) -> None:
    await conn.execute(Q["cancel_now"], {"task_id": task_id})


async def mark_cancel_requested(conn: Connection, task_id: UUID) -> None:
    await conn.execute(Q["mark_cancel_requested"], {"task_id": task_id})


async def list_tasks(conn: Connection, **params: Any) -> list[Row]:
    return await _all(conn, "list_tasks", params)


async def task_detail(conn: Connection, org_id: UUID, task_id: UUID) -> Row | None:
    return await _one(conn, "task_detail", {"org_id": org_id, "task_id": task_id})


async def task_counts(conn: Connection) -> list[Row]:
    return await _all(conn, "task_counts", {})


async def ready_depth(conn: Connection) -> list[Row]:
    return await _all(conn, "ready_depth", {})


async def restart_running_source_run(conn: Connection, task_id: UUID, max_attempts: int) -> None:
    await conn.execute(Q["restart_running_source_run"], {"task_id": task_id, "max_attempts": max_attempts})
