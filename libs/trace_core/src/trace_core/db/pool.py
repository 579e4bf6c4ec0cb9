"""Where the database is and how services connect to it."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from trace_core.db.embedded import start_embedded_postgres
from trace_core.settings import Settings

Connection = AsyncConnection[dict[str, Any]]
Pool = AsyncConnectionPool[Connection]


async def connect_cancel_safe(database_url: str, **kwargs: Any) -> AsyncConnection[Any]:
    """`AsyncConnection.connect` for long-lived background connections: cancelling the caller mid-connect
    closes the connection once it is made instead of leaking it."""
    connecting = asyncio.ensure_future(AsyncConnection.connect(database_url, **kwargs))
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        connecting.add_done_callback(_close_when_made)
        raise


_closing: set[asyncio.Future[None]] = set()  # the event loop keeps only weak references to tasks


def _close_when_made(connecting: asyncio.Future[AsyncConnection[Any]]) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        closing = asyncio.ensure_future(connecting.result().close())
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)


def resolve_database_url(settings: Settings) -> str:
    """`TRACE_DATABASE_URL` when set; otherwise the embedded cluster, started on demand."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.embedded_pgdata)


def create_pool(settings: Settings, database_url: str, *, name: str) -> Pool:
    """A closed pool (open it in the app's lifespan with `await pool.open(wait=True)`): autocommit
    connections with dict rows, so every transaction is an explicit `conn.transaction()` block.

    Statements are prepared on their first run on a connection, not their sixth (psycopg's default): the hot
    ones take milliseconds to plan (the task payloads ~7 ms, a router pass ~3 ms), and a pool of connections each
    planned them five more times before preparing; in the dispatch benchmark planning was a third of Postgres's
    statement time."""
    return AsyncConnectionPool(
        database_url,
        connection_class=Connection,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        kwargs={"row_factory": dict_row, "autocommit": True, "prepare_threshold": 0},
        name=name,
        open=False,
    )
