"""Named SQL queries kept in `.sql` files, procrastinate style.

A file holds queries each introduced by a `-- name: query_name --` line and written with named
parameters (`%(org_id)s`). aiosql does the same with dynamically created attributes, which mypy cannot
check; a dict of names is all the repositories here need.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Generic, TypeVar

from psycopg import AsyncConnection, sql

Row = dict[str, Any]
T = TypeVar("T")

_HEADER = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*) --\s*$", re.MULTILINE)


def load_queries(package: str, filename: str) -> dict[str, sql.SQL]:
    """Queries of `package/filename` by name; a name given twice is an error."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, sql.SQL] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{package}/{filename}: query {name!r} is defined twice")
        queries[name] = sql.SQL(body.strip())
    return queries


async def fetch_one(conn: AsyncConnection[Row], query: sql.SQL | sql.Composed, params: dict[str, Any]) -> Row | None:
    cursor = await conn.execute(query, params)
    return await cursor.fetchone()


async def fetch_all(conn: AsyncConnection[Row], query: sql.SQL | sql.Composed, params: dict[str, Any]) -> list[Row]:
    cursor = await conn.execute(query, params)
    return await cursor.fetchall()


class Pending(Generic[T]):
    """What a statement already sent returns, read later. On a connection in pipeline mode
    (`async with conn.pipeline()`) statements go out together at the next sync, at the latest with the COMMIT: a
    transaction that reads its results after its block ends pays one round trip for all of them and the COMMIT,
    instead of one per statement (each round trip wakes a Postgres backend and the event loop)."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read

    @classmethod
    def of(cls, value: T) -> Pending[T]:
        """A result known without a statement."""

        async def known() -> T:
            return value

        return cls(known)

    async def result(self) -> T:
        return await self._read()


async def send_all(
    conn: AsyncConnection[Row], query: sql.SQL | sql.Composed, params: dict[str, Any], convert: Callable[[list[Row]], T]
) -> Pending[T]:
    """Send `query`; its rows, passed through `convert`, are read when the result is asked for."""
    cursor = await conn.execute(query, params)

    async def read() -> T:
        return convert(await cursor.fetchall())

    return Pending(read)
