"""SQL of the tasks the dispatcher runs itself (`loops/operators.py`)."""

from __future__ import annotations

from uuid import UUID

from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_all, load_queries

Q = load_queries("dispatcher.repositories", "operator_tasks.sql")

# pg_advisory_xact_lock key of a batch (beside the leader's and the migrations' keys)
OPERATOR_RUNS_LOCK_KEY = 0x7472616365_03


async def lock_operator_runs(conn: Connection) -> None:
    await conn.execute(Q["lock_operator_runs"], {"key": OPERATOR_RUNS_LOCK_KEY})


async def ready_operator_tasks(conn: Connection, limit: int) -> list[Row]:
    """Up to `limit` queued tasks per job, ordered by job then event, locked (call in a transaction)."""
    return await fetch_all(conn, Q["ready_operator_tasks"], {"limit": limit})


async def record_operator_attempts(conn: Connection, outcomes: list[tuple[UUID, str | None]]) -> dict[UUID, UUID]:
    """`(task_id, error or None)`s: each task's attempt, finished; returns the attempt id of each task."""
    params = {"task_ids": [task_id for task_id, _ in outcomes], "errors": [error for _, error in outcomes]}
    return {row["task_id"]: row["attempt_id"] for row in await fetch_all(conn, Q["record_operator_attempts"], params)}
