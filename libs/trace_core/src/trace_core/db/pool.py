"""Where the database is and how services connect to it."""

from __future__ import annotations

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from trace_core.db.embedded import start_embedded_postgres
from trace_core.settings import Settings


def resolve_database_url(settings: Settings) -> str:
    """`TRACE_DATABASE_URL` when set; otherwise the embedded cluster, started on demand."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.embedded_pgdata)


def create_pool(settings: Settings, database_url: str, *, name: str) -> AsyncConnectionPool:
    """A closed pool (open it in the app's lifespan with `await pool.open(wait=True)`); rows are dicts."""
    return AsyncConnectionPool(
        database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        name=name,
        open=False,
    )
