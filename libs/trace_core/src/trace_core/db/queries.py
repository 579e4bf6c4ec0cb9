"""Named SQL queries kept in `.sql` files, procrastinate style.

A file holds queries each introduced by a `-- name: query_name --` line and written with named
parameters (`%(org_id)s`). aiosql does the same with dynamically created attributes, which mypy cannot
check; a dict of names is all the repositories here need.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from psycopg import AsyncConnection, sql

Row = dict[str, Any]

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
