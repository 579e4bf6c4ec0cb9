"""SQL of the notifications between dispatcher replicas (Postgres NOTIFY)."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from trace_core.db.queries import load_queries

Q = load_queries("dispatcher.repositories", "notifications.sql")


async def notify_channels(conn: AsyncConnection[Any], payloads: dict[str, str]) -> None:
    """NOTIFY each channel of `payloads` with its payload."""
    await conn.execute(Q["notify_channels"], {"channels": list(payloads), "payloads": list(payloads.values())})
