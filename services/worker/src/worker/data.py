"""What the wrapper does with an operator's data: stores the rows a child wrote, and fetches its input.

The child writes Parquet into its working directory and never holds a credential; the wrapper puts the file
into the output's dataset version (one object per scope, so a re-run replaces it) or sends its rows to the
dispatcher for a Postgres output, and only then emits the data event for the scope.

A batch query's pinned datasets are staged the same way, as Parquet in the child's working directory: the
version's files from the object store, and a Postgres version's rows (CSV from the dispatcher) converted to
Parquet. The child's result file becomes the attempt's result object, recorded with the dispatcher.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.internal import (
    MAX_ROWS_PER_CALL,
    Column,
    QueryInputRequest,
    QueryResultRequest,
    RowsRequest,
    TaskInputRequest,
)
from trace_core.contracts.operator import QueryInputsReady, QueryResultWritten, WriteOutput
from trace_core.contracts.queries import BatchQuery, QueryPin
from trace_core.contracts.tasks import OutputStorage, TaskPayload
from trace_core.dag.config import UpdateStrategy
from trace_core.objectstore import ObjectStore
from trace_core.storage import query_result_key
from worker.cascade import written_kind
from worker.client import DispatcherClient
from worker.operators import OperatorError

# Rows per /internal/rows call: under the contract's limit and small enough to keep one call's body modest.
ROWS_PER_CALL = min(MAX_ROWS_PER_CALL, 10_000)
# Where a batch query's inputs are staged, in the child's working directory (replaced by each query).
STAGED_INPUTS = "query-inputs"
# Postgres types of dataset tables as the Query Service's engine reads them (postgres_scanner's mapping: an
# unconstrained numeric is a DOUBLE); every other type, jsonb included, arrives as its text.
_ARROW_TYPES = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "real": pa.float32(),
    "numeric": pa.float64(),
    "boolean": pa.bool_(),
}
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")


def _json_value(value: Any) -> Any:
    """A Parquet value as JSON Postgres reads back into the column's type."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


class DataPlane:
    def __init__(self, store: ObjectStore, client: DispatcherClient) -> None:
        self.store = store
        self.client = client

    async def store_output(
        self, payload: TaskPayload, write: WriteOutput, written: set[tuple[int, str]]
    ) -> EmittedEvent:
        """Store one file the child wrote; `written` holds the (output, storage key) this attempt already wrote,
        so only the first write of a scope replaces what earlier attempts or tasks wrote for it."""
        path = Path(write.path)
        try:
            target = payload.outputs[write.output]
            if target.storage is OutputStorage.S3:
                await self.store.put_file(target.file_key(write.scope), path)
            elif target.storage is OutputStorage.POSTGRES:
                table = await asyncio.to_thread(pq.read_table, path)
                rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
                replace = payload.job.update_strategy is UpdateStrategy.REPLACE
                first = (write.output, write.scope.storage_key) not in written
                # a replaced scope written with no rows is cleared: it holds nothing now
                for start in range(0, max(len(rows), 1 if replace and first else 0), ROWS_PER_CALL):
                    chunk = rows[start : start + ROWS_PER_CALL]
                    await self._write_rows(payload, write.output, write.scope, chunk, replace_scope=replace and first)
                    first = False
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        written.add((write.output, write.scope.storage_key))
        return EmittedEvent(
            output=write.output, kind=written_kind(payload), scope=write.scope, payload={"rows": write.rows}
        )

    async def clear_scope(self, payload: TaskPayload, output: int, scope: EventScope) -> None:
        """Remove what output `output` holds for `scope` (a replace job's invalidated scope it did not rewrite)."""
        target = payload.outputs[output]
        if target.storage is OutputStorage.S3:
            await self.store.delete(target.file_key(scope))
        elif target.storage is OutputStorage.POSTGRES:
            await self._write_rows(payload, output, scope, [], replace_scope=True)

    async def _write_rows(
        self, payload: TaskPayload, output: int, scope: EventScope, rows: list[dict[str, Any]], replace_scope: bool
    ) -> None:
        await self.client.write_rows(
            RowsRequest(
                task_id=payload.task_id,
                attempt_id=payload.attempt_id,
                attempt_token=payload.attempt_token,
                output=output,
                scope=scope,
                replace_scope=replace_scope,
                rows=rows,
            )
        )

    async def fetch_input(self, payload: TaskPayload, workdir: str) -> Path:
        """The input event's scope as a Parquet file in `workdir` (the child's working directory)."""
        answer = await self.client.task_input(
            TaskInputRequest(
                task_id=payload.task_id, attempt_id=payload.attempt_id, attempt_token=payload.attempt_token
            )
        )
        target = Path(workdir) / f"input-{uuid.uuid4().hex}.parquet"
        if answer.storage == "s3":
            assert answer.parquet_key is not None
            if not await self.store.get_file(answer.parquet_key, target):
                raise OperatorError(f"the input scope's file {answer.parquet_key} is not in the object store")
            return target
        table = pa.Table.from_pylist(answer.rows) if answer.rows else pa.table({c.name: [] for c in answer.columns})
        await asyncio.to_thread(pq.write_table, table, target)
        return target

    async def stage_query_inputs(self, payload: TaskPayload, workdir: str) -> QueryInputsReady:
        """The batch query's pinned datasets as Parquet folders under `{workdir}/query-inputs`, one per version:
        what the child's engine reads instead of the object store and Postgres, which it cannot reach."""
        query = _query_of(payload)
        root = Path(workdir) / STAGED_INPUTS
        await asyncio.to_thread(shutil.rmtree, root, True)
        staged: list[QueryPin] = []
        for pin in query.datasets:
            folder_key = f"{pin.dataset_uuid}/{pin.dataset_version}"
            folder = root / folder_key
            folder.mkdir(parents=True)
            if pin.storage == "s3":
                for key in await self.store.list_keys(pin.location):
                    if key.endswith(".parquet"):
                        await self.store.get_file(key, folder / PurePosixPath(key).name)
            else:
                await self._stage_postgres(payload, pin, folder)
            staged.append(pin.model_copy(update={"storage": "s3", "location": folder_key}))
        return QueryInputsReady(root=str(root), datasets=staged)

    async def discard_staged(self, workdir: str) -> None:
        """Remove what `stage_query_inputs` staged in `workdir` (nothing when the attempt staged nothing)."""
        await asyncio.to_thread(shutil.rmtree, Path(workdir) / STAGED_INPUTS, True)

    async def _stage_postgres(self, payload: TaskPayload, pin: QueryPin, folder: Path) -> None:
        """A Postgres version's rows as `rows.parquet` (none when the version has no table yet)."""
        rows = folder / "rows.csv"
        call = QueryInputRequest(
            task_id=payload.task_id,
            attempt_id=payload.attempt_id,
            attempt_token=payload.attempt_token,
            dataset_uuid=pin.dataset_uuid,
        )
        try:
            columns = await self.client.query_input(call, rows)
            if columns:
                await asyncio.to_thread(_csv_to_parquet, rows, columns, folder / "rows.parquet")
        finally:
            rows.unlink(missing_ok=True)

    async def store_query_result(self, payload: TaskPayload, written: QueryResultWritten) -> None:
        """Store the child's result file as this attempt's result and record it with the dispatcher."""
        path = Path(written.path)
        try:
            key = query_result_key(payload.org_id, _query_of(payload).query_id, payload.attempt_number)
            await self.store.put_file(key, path)
            await self.client.record_query_result(
                QueryResultRequest(
                    task_id=payload.task_id,
                    attempt_id=payload.attempt_id,
                    attempt_token=payload.attempt_token,
                    location=key,
                    row_count=written.rows,
                    truncated=written.truncated,
                    columns=written.columns,
                )
            )
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)


def _query_of(payload: TaskPayload) -> BatchQuery:
    if payload.query is None:
        raise OperatorError("this task runs no batch query", retryable=False)
    return payload.query


def _arrow_type(pg_type: str) -> pa.DataType:
    numeric = _NUMERIC.match(pg_type)
    if numeric is not None and int(numeric.group(1)) <= 38:
        return pa.decimal128(int(numeric.group(1)), int(numeric.group(2)))
    return _ARROW_TYPES.get(pg_type if numeric is None else "numeric", pa.string())


def _csv_to_parquet(source: Path, columns: list[Column], target: Path) -> None:
    """The dispatcher's CSV of a table (no header; NULL unquoted-empty, '' quoted) as a Parquet file."""
    schema = pa.schema([(column.name, _arrow_type(column.type)) for column in columns])
    if source.stat().st_size == 0:
        pq.write_table(schema.empty_table(), target)
        return
    reader = pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(column_names=schema.names),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=schema,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    with pq.ParquetWriter(target, schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
