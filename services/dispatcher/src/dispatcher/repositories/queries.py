"""SQL of batch queries: each org's system DAG and its `duckdb_query` job, query tasks, what an attempt reads and
the result it records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from trace_core.contracts.queries import ResultColumn
from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_one, load_queries
from trace_core.idempotency import fingerprint
from trace_core.naming import DATA_SCHEMA

Q = load_queries("dispatcher.repositories", "queries.sql")

QUERY_DAG = "_queries"
QUERY_JOB = "duckdb_query"
QUERY_OPERATOR = "duckdb_query"
QUERY_RUNTIME = "ecs_python"
# What the system DAG's one version records as its config (there is no YAML to keep).
_QUERY_DAG_CONFIG = {"dag": QUERY_DAG, "system": True, "jobs": {QUERY_JOB: {"operator": QUERY_OPERATOR}}}


async def query_job(conn: Connection, org_id: UUID) -> Row | None:
    return await fetch_one(conn, Q["query_job"], {"org_id": org_id, "dag_name": QUERY_DAG, "job_name": QUERY_JOB})


async def create_query_dag(
    conn: Connection, org_id: UUID, *, max_concurrency: int, timeout_s: int, max_attempts: int
) -> None:
    """Make the org's system DAG of batch queries unless it exists (call in a transaction)."""
    params = {
        "org_id": org_id,
        "dag_name": QUERY_DAG,
        "job_name": QUERY_JOB,
        "operator": QUERY_OPERATOR,
        "runtime": QUERY_RUNTIME,
        "config": Jsonb(_QUERY_DAG_CONFIG),
        "config_hash": fingerprint(_QUERY_DAG_CONFIG),
        "max_concurrency": max_concurrency,
        "timeout_s": timeout_s,
        "max_attempts": max_attempts,
    }
    await conn.execute(Q["create_query_dag"], params)


async def set_query_job_settings(
    conn: Connection, job: Row, *, max_concurrency: int, timeout_s: int, max_attempts: int
) -> None:
    params = {
        "dag_version_id": job["dag_version_id"],
        "job_id": job["job_id"],
        "max_concurrency": max_concurrency,
        "timeout_s": timeout_s,
        "max_attempts": max_attempts,
    }
    await conn.execute(Q["set_query_job_settings"], params)


async def insert_query_task(conn: Connection, org_id: UUID, job: Row, query_id: UUID) -> UUID:
    params = {
        "org_id": org_id,
        "dag_id": job["dag_id"],
        "dag_version_id": job["dag_version_id"],
        "job_id": job["job_id"],
        "runtime": job["runtime"],
        "max_attempts": job["max_attempts"],
        "query_id": query_id,
    }
    row = await fetch_one(conn, Q["insert_query_task"], params)
    assert row is not None
    task_id: UUID = row["task_id"]
    return task_id


async def task_of_query(conn: Connection, query_id: UUID) -> UUID | None:
    row = await fetch_one(conn, Q["task_of_query"], {"query_id": query_id})
    return None if row is None else row["task_id"]


async def pinned_input(conn: Connection, task_id: UUID, dataset_uuid: UUID) -> Row | None:
    return await fetch_one(conn, Q["pinned_input"], {"task_id": task_id, "dataset_uuid": dataset_uuid})


async def record_result(
    conn: Connection, task_id: UUID, location: str, row_count: int, truncated: bool, columns: list[ResultColumn]
) -> UUID | None:
    params: dict[str, Any] = {
        "task_id": task_id,
        "location": location,
        "row_count": row_count,
        "truncated": truncated,
        "columns": Jsonb([column.model_dump() for column in columns]),
    }
    row = await fetch_one(conn, Q["record_result"], params)
    return None if row is None else row["query_id"]


async def copy_rows(conn: Connection, table: str, columns: Sequence[str]) -> AsyncIterator[bytes]:
    """The rows of a dataset table (`columns` only) as CSV, chunk by chunk."""
    query = Q["copy_rows"].format(
        table=sql.Identifier(DATA_SCHEMA, table), columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    async with conn.cursor().copy(query) as copy:
        async for chunk in copy:
            yield bytes(chunk)
