"""`/internal/rows` writes rows of `write_mode: direct` Postgres outputs; `/internal/task-input` says where a
task's input scope lives (a Parquet file key, or the rows of a Postgres dataset).

A dataset version's table (`trace_data.ds_<uuid>_<version>`) is created by its first write, with column types
taken from that write's JSON values; later writes must fit those columns. Each call is one transaction: the
gate, the optional delete of the scope's earlier rows (`replace`) and the insert, so a refused call writes
nothing. Rows carry the scope they were written for (`_trace_scope`, the scope's `storage_key`: its range when
it has one) and the task that wrote them.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from litestar.exceptions import ClientException, HTTPException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT

from dispatcher.internal.service import gate_attempt
from dispatcher.repositories import datasets as repo
from trace_core.contracts.events import EventScope
from trace_core.contracts.internal import (
    Column,
    RowsRequest,
    RowsResponse,
    TaskInputRequest,
    TaskInputResponse,
)
from trace_core.contracts.tasks import TaskStatus
from trace_core.db.pool import Pool
from trace_core.logging import get_logger
from trace_core.naming import SYSTEM_COLUMN_PREFIX
from trace_core.storage import location_file_key

log = get_logger(__name__)

COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_INT64 = range(-(2**63), 2**63)


def table_of(storage_location: str) -> str:
    """The table of a Postgres dataset version, from its `trace_data.<table>` storage location."""
    return storage_location.split(".", 1)[1]


def _bad_request(detail: str) -> HTTPException:
    return ClientException(detail=detail, status_code=HTTP_400_BAD_REQUEST)


def _pg_type(column: str, values: list[Any]) -> str:
    """The Postgres type of a new column, from the JSON values of the first write."""
    kinds = set()
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, int):
            kinds.add("bigint" if value in _INT64 else "numeric")
        elif isinstance(value, float):
            kinds.add("double precision")
        elif isinstance(value, str):
            kinds.add("text")
        else:
            kinds.add("jsonb")
    if not kinds:
        return "text"  # only nulls so far: text takes any later value's text form
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"bigint", "numeric"}:
        return "numeric"
    if kinds <= {"bigint", "numeric", "double precision"}:
        return "double precision"
    raise _bad_request(f"rows: column {column!r} mixes {', '.join(sorted(kinds))} values; give it one type")


def _check_rows(call: RowsRequest, unique_key: list[str]) -> list[str]:
    """Column names of the call, in first-seen order; every row has the unique key."""
    names: dict[str, None] = {}
    for index, row in enumerate(call.rows):
        for name in row:
            if name in names:
                continue
            if name.startswith(SYSTEM_COLUMN_PREFIX):
                raise _bad_request(f"rows.{index}.{name}: columns starting with {SYSTEM_COLUMN_PREFIX!r} are Trace's")
            if not COLUMN_NAME.match(name):
                raise _bad_request(f"rows.{index}: column name {name!r} must match {COLUMN_NAME.pattern}")
            names[name] = None
        for key in unique_key:
            if row.get(key) is None:
                raise _bad_request(f"rows.{index}.{key}: the unique_key column {key!r} is missing or null")
    return list(names)


class RowsApi:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def write(self, call: RowsRequest) -> RowsResponse:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await gate_attempt(conn, call)
            if TaskStatus(gate["task_status"]).is_terminal:
                raise ClientException(
                    detail=f"task {call.task_id} is {gate['task_status']}; it cannot write rows any more",
                    status_code=HTTP_409_CONFLICT,
                )
            target = await repo.output_target(conn, call.task_id, call.output)
            if target is None:
                raise _bad_request(f"output: {call.output} is out of range for this task's job")
            self._check_target(target, call.output)
            unique_key: list[str] = list(target["unique_key"])
            table = table_of(target["storage_location"])
            names = _check_rows(call, unique_key)
            existing = {row["name"]: row["type"] for row in await repo.table_columns(conn, table)}
            if not call.rows:  # a scope rewritten with no rows: clearing it is the whole write
                replaced = await repo.delete_scope(conn, table, call.scope.storage_key) if existing else 0
                return RowsResponse(written=0, duplicates=0, replaced=replaced)
            if not existing:
                columns = [(name, _pg_type(name, [row.get(name) for row in call.rows])) for name in names]
                await repo.create_table(conn, table, columns, unique_key)
                await repo.record_schema(conn, target["dataset_uuid"], [{"name": n, "type": t} for n, t in columns])
            else:
                unknown = [name for name in names if name not in existing]
                if unknown:
                    known = ", ".join(n for n in existing if not n.startswith(SYSTEM_COLUMN_PREFIX))
                    raise _bad_request(
                        f"rows: column {unknown[0]!r} is not in the dataset's table (its columns: {known})"
                    )
                columns = [(name, existing[name]) for name in names]
            rows = call.rows
            update = target["update_strategy"] == "replace"
            if unique_key and update:
                # one statement cannot update a row twice: within a call the last row of a key wins
                rows = list({tuple(row[k] for k in unique_key): row for row in rows}.values())
            replaced = await repo.delete_scope(conn, table, call.scope.storage_key) if call.replace_scope else 0
            try:
                async with conn.transaction():
                    written, skipped = await repo.insert_rows(
                        conn,
                        table,
                        columns,
                        rows,
                        scope_key=call.scope.storage_key,
                        task_id=call.task_id,
                        unique_key=unique_key,
                        update_on_conflict=update,
                    )
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                raise _bad_request(f"rows: {error.diag.message_primary}") from None
        log.debug("dispatcher.rows.written", task_id=str(call.task_id), written=written, duplicates=skipped)
        return RowsResponse(written=written, duplicates=skipped + len(call.rows) - len(rows), replaced=replaced)

    @staticmethod
    def _check_target(target: dict[str, Any], output: int) -> None:
        if target["storage"] != "postgres":
            where = "is events only" if target["storage"] == "none" else "is stored as Parquet in the object store"
            raise _bad_request(f"output: output {output} {where}; /internal/rows writes Postgres outputs only")
        if target["write_mode"] != "direct":
            raise _bad_request(
                f"output: output {output} has write_mode {target['write_mode']!r}; only 'direct' is supported yet"
            )

    async def task_input(self, call: TaskInputRequest) -> TaskInputResponse:
        """Where the task's input event scope lives: a Parquet file key, or the rows of a Postgres dataset."""
        async with self.pool.connection() as conn, conn.transaction():
            await gate_attempt(conn, call)
            source = await repo.input_target(conn, call.task_id)
            if source is None:
                raise _bad_request(f"task {call.task_id} has no input event (a source run reads no input)")
            scope = EventScope.from_columns(
                source["scope_cursor"], source["partition_key"], source["range_start"], source["range_end"]
            )
            if source["storage"] == "s3":
                key = location_file_key(source["storage_location"], scope)
                return TaskInputResponse(storage="s3", parquet_key=key)
            if source["storage"] != "postgres":
                raise _bad_request("the input event's dataset is events only: it has no rows to read")
            table = table_of(source["storage_location"])
            columns = [
                Column(name=row["name"], type=row["type"])
                for row in await repo.table_columns(conn, table)
                if not row["name"].startswith(SYSTEM_COLUMN_PREFIX)
            ]
            names = [c.name for c in columns]
            rows = await repo.select_scope(conn, table, names, scope.storage_key) if columns else []
        return TaskInputResponse(storage="postgres", columns=columns, rows=rows)
