"""SQL of `operator_state`: the durable state of stateful operators (range_aggregator, block_follower)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_one, load_queries

Q = load_queries("dispatcher.repositories", "operator_state.sql")


async def read_state(conn: Connection, org_id: UUID, job_id: UUID) -> Row | None:
    return await fetch_one(conn, Q["read_state"], {"org_id": org_id, "job_id": job_id})


async def lock_state(conn: Connection, org_id: UUID, job_id: UUID) -> Row | None:
    """`read_state`, the row locked until the transaction ends."""
    return await fetch_one(conn, Q["lock_state"], {"org_id": org_id, "job_id": job_id})


async def swap_state(
    conn: Connection, org_id: UUID, job_id: UUID, expected_revision: int, state: dict[str, Any], task_id: UUID
) -> int | None:
    """Store `state` if the stored revision is `expected_revision` (0: no row yet); the new revision, or None."""
    params = {
        "org_id": org_id,
        "job_id": job_id,
        "state": Jsonb(state),
        "task_id": task_id,
        "expected_revision": expected_revision,
    }
    row = await fetch_one(conn, Q["insert_state" if expected_revision == 0 else "update_state"], params)
    return None if row is None else int(row["revision"])
