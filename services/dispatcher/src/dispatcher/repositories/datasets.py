"""SQL of the dataset registry and of Postgres dataset tables (one physical table per dataset version)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_all, fetch_one, load_queries
from trace_core.naming import DATA_SCHEMA

Q = load_queries("dispatcher.repositories", "datasets.sql")


async def list_readable(conn: Connection, org_id: UUID, user_id: UUID, is_admin: bool) -> list[Row]:
    return await fetch_all(conn, Q["list_readable"], {"org_id": org_id, "user_id": user_id, "is_admin": is_admin})


async def readable_by_name(
    conn: Connection, org_id: UUID, user_id: UUID, is_admin: bool, dataset_name: str
) -> Row | None:
    params = {"org_id": org_id, "user_id": user_id, "is_admin": is_admin, "dataset_name": dataset_name}
    return await fetch_one(conn, Q["readable_by_name"], params)


async def versions_of(conn: Connection, dataset_uuid: UUID, current: UUID) -> list[Row]:
    return await fetch_all(conn, Q["versions_of"], {"dataset_uuid": dataset_uuid, "current": current})


async def read_roles_of(conn: Connection, dataset_uuid: UUID) -> list[str]:
    return [row["name"] for row in await fetch_all(conn, Q["read_roles_of"], {"dataset_uuid": dataset_uuid})]


async def roles_by_name(conn: Connection, org_id: UUID, names: list[str]) -> dict[str, UUID]:
    rows = await fetch_all(conn, Q["roles_by_name"], {"org_id": org_id, "names": names})
    return {row["name"]: row["role_id"] for row in rows}


async def replace_read_roles(conn: Connection, org_id: UUID, dataset_uuid: UUID, role_ids: list[UUID]) -> None:
    """Set a dataset's read roles to exactly `role_ids` (call inside a transaction)."""
    params = {"org_id": org_id, "dataset_uuid": dataset_uuid, "role_ids": role_ids}
    await conn.execute(Q["lock_dataset"], params)
    await conn.execute(Q["clear_read_roles"], params)
    if role_ids:
        await conn.execute(Q["add_read_roles"], params)
    await conn.execute(Q["touch_dataset"], params)


async def output_target(conn: Connection, task_id: UUID, output: int) -> Row | None:
    return await fetch_one(conn, Q["output_target"], {"task_id": task_id, "output": output})


async def input_target(conn: Connection, task_id: UUID) -> Row | None:
    return await fetch_one(conn, Q["input_target"], {"task_id": task_id})


def _table(table: str) -> sql.Identifier:
    return sql.Identifier(DATA_SCHEMA, table)


def _columns(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


async def table_columns(conn: Connection, table: str) -> list[Row]:
    """`[{name, type}]` of a dataset table, Trace's own columns included; empty when it does not exist."""
    return await fetch_all(conn, Q["table_columns"], {"qualified_table": f"{DATA_SCHEMA}.{table}"})


async def create_table(conn: Connection, table: str, columns: list[tuple[str, str]], unique_key: list[str]) -> None:
    """Create a dataset version's table once (writers of one version serialize on it); call in a transaction.

    Types come from `_pg_type`'s fixed set of names, never from user text.
    """
    await conn.execute(Q["lock_table_creation"], {"qualified_table": f"{DATA_SCHEMA}.{table}"})
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type)) for name, pg_type in columns
    )
    await conn.execute(Q["create_table"].format(table=_table(table), columns=definition))
    await conn.execute(Q["create_scope_index"].format(index=sql.Identifier(f"{table[:50]}_scope"), table=_table(table)))
    if unique_key:
        await conn.execute(
            Q["create_unique_key"].format(
                index=sql.Identifier(f"{table[:50]}_key"), table=_table(table), columns=_columns(unique_key)
            )
        )


async def record_schema(conn: Connection, dataset_uuid: UUID, columns: list[dict[str, str]]) -> None:
    await conn.execute(Q["record_schema"], {"dataset_uuid": dataset_uuid, "schema": Jsonb({"columns": columns})})


async def delete_scope(conn: Connection, table: str, scope_key: str) -> int:
    cursor = await conn.execute(Q["delete_scope"].format(table=_table(table)), {"scope_key": scope_key})
    return cursor.rowcount


async def insert_rows(
    conn: Connection,
    table: str,
    columns: list[tuple[str, str]],
    rows: list[dict[str, Any]],
    *,
    scope_key: str,
    task_id: UUID,
    unique_key: list[str],
    update_on_conflict: bool,
) -> tuple[int, int]:
    """Insert rows in one statement; returns (inserted or updated, skipped as duplicates of the unique key)."""
    names = [name for name, _ in columns]
    conflict: sql.Composable
    if not unique_key:
        conflict = sql.SQL("")
    elif update_on_conflict:
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in [*names, "_trace_scope"]
        )
        conflict = sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}, _trace_task_id = EXCLUDED._trace_task_id").format(
            _columns(unique_key), updates
        )
    else:
        conflict = sql.SQL("ON CONFLICT ({}) DO NOTHING").format(_columns(unique_key))
    column_types = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type)) for name, pg_type in columns
    )
    query = Q["insert_rows"].format(
        table=_table(table), columns=_columns(names), column_types=column_types, conflict=conflict
    )
    cursor = await conn.execute(query, {"rows": Jsonb(rows), "scope_key": scope_key, "task_id": task_id})
    written = len(await cursor.fetchall())
    return written, len(rows) - written


async def select_scope(conn: Connection, table: str, columns: list[str], scope_key: str) -> list[Row]:
    query = Q["select_scope"].format(table=_table(table), columns=_columns(columns))
    return await fetch_all(conn, query, {"scope_key": scope_key})
