"""The catalog of one query: its dataset names resolved to versions once, at the start, and pinned.

Pinning records a `queries` row and one `query_pins` row per dataset in the same statement that resolves the
names, so a version a running query reads is visibly in use until the query is finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol
from uuid import UUID

from trace_core.db.pool import Connection
from trace_core.db.queries import fetch_one, load_queries
from trace_core.naming import SYSTEM_COLUMN_PREFIX
from trace_core.query.errors import DatasetNotFoundError

Q = load_queries("trace_core.query", "catalog.sql")

QueryStatus = Literal["Queued", "Running", "Completed", "Failed", "Canceled"]


class Reader(Protocol):
    """Who reads: a `Principal` of the public API, or the caller a platform component acts for."""

    @property
    def org_id(self) -> UUID: ...

    @property
    def user_id(self) -> UUID: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PinnedDataset:
    dataset_name: str
    dataset_uuid: UUID
    dataset_version: UUID
    storage: str
    """`s3` (Parquet files under `storage_location`) or `postgres` (the table `storage_location`)."""
    storage_location: str
    schema: dict[str, Any] | None
    """The registry's schema (`{"columns": [{"name", "type"}]}`), when known."""
    table_columns: tuple[str, ...] | None
    """Postgres datasets: the table's columns without Trace's system columns; None when the table is missing."""


@dataclass(frozen=True, slots=True)
class PinnedQuery:
    query_id: UUID
    datasets: tuple[PinnedDataset, ...]


async def pin_datasets(
    conn: Connection,
    reader: Reader,
    *,
    sql: str,
    names: frozenset[str],
    max_rows: int,
    timeout_s: float,
    format: str,
) -> PinnedQuery:
    """Resolve `names` for an interactive query in one snapshot and record the query (Running) and its pins.

    Raises `DatasetNotFoundError` (recording nothing) when a name is missing or the caller may not read it."""
    params = _pin_params(reader, sql, names, max_rows, timeout_s, format) | {"mode": "interactive", "status": "Running"}
    # one round trip: BEGIN, the flush setting, the statement and COMMIT go out as one pipeline
    async with conn.pipeline(), conn.transaction():
        await conn.execute(Q["skip_commit_flush"])
        cursor = await conn.execute(Q["pin_datasets"], params)
    return _pinned(await cursor.fetchall(), names)


async def pin_batch_query(
    conn: Connection,
    reader: Reader,
    *,
    sql: str,
    names: frozenset[str],
    max_rows: int,
    timeout_s: float,
    format: str,
) -> PinnedQuery:
    """`pin_datasets` for a batch query, recorded Queued, in the caller's transaction (which also queues its task)
    and with a durable commit: the query outlives the request that submitted it."""
    params = _pin_params(reader, sql, names, max_rows, timeout_s, format) | {"mode": "batch", "status": "Queued"}
    cursor = await conn.execute(Q["pin_datasets"], params)
    return _pinned(await cursor.fetchall(), names)


def _pin_params(
    reader: Reader, sql: str, names: frozenset[str], max_rows: int, timeout_s: float, format: str
) -> dict[str, Any]:
    return {
        "org_id": reader.org_id,
        "user_id": reader.user_id,
        "is_admin": reader.is_admin,
        "names": sorted(names),
        "sql": sql,
        "max_rows": max_rows,
        "timeout_s": timeout_s,
        "format": format,
        "system_prefix": SYSTEM_COLUMN_PREFIX,
    }


def _pinned(rows: list[dict[str, Any]], names: frozenset[str]) -> PinnedQuery:
    resolved = {row["dataset_name"] for row in rows if row["dataset_name"] is not None}
    missing = sorted(names - resolved)
    if missing:
        raise DatasetNotFoundError(missing[0])
    query_id: UUID = rows[0]["query_id"]
    datasets = tuple(
        PinnedDataset(
            dataset_name=row["dataset_name"],
            dataset_uuid=row["dataset_uuid"],
            dataset_version=row["dataset_version"],
            storage=row["storage"],
            storage_location=row["storage_location"],
            schema=row["schema"],
            table_columns=tuple(row["table_columns"]) if row["table_columns"] is not None else None,
        )
        for row in rows
        if row["dataset_name"] is not None
    )
    return PinnedQuery(query_id, datasets)


async def finish_query(
    conn: Connection,
    query_id: UUID,
    status: QueryStatus,
    *,
    row_count: int | None = None,
    error: str | None = None,
) -> None:
    """Mark a query finished; its pins stop holding their versions."""
    async with conn.pipeline(), conn.transaction():
        await conn.execute(Q["skip_commit_flush"])
        await conn.execute(
            Q["finish_query"], {"query_id": query_id, "status": status, "row_count": row_count, "error": error}
        )


async def query_by_id(conn: Connection, reader: Reader, query_id: UUID) -> dict[str, Any] | None:
    """A query the caller may see (its own; any of its org for an admin), with its pins (and a batch query's task);
    None otherwise."""
    return await fetch_one(
        conn,
        Q["query_by_id"],
        {"query_id": query_id, "org_id": reader.org_id, "user_id": reader.user_id, "is_admin": reader.is_admin},
    )
