"""What the wrapper does with an operator's data: stores the rows a child wrote, and fetches its input.

The child writes Parquet into its working directory and never holds a credential; the wrapper puts the file
into the output's dataset version (one object per scope, so a re-run replaces it) or sends its rows to the
dispatcher for a Postgres output, and only then emits the data event for the scope.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trace_core.contracts.events import EmittedEvent
from trace_core.contracts.internal import MAX_ROWS_PER_CALL, RowsRequest, TaskInputRequest
from trace_core.contracts.operator import WriteOutput
from trace_core.contracts.tasks import OutputStorage, TaskPayload
from trace_core.dag.config import UpdateStrategy
from trace_core.objectstore import ObjectStore
from trace_core.storage import location_file_key
from worker.client import DispatcherClient
from worker.operators import OperatorError

# Rows per /internal/rows call: under the contract's limit and small enough to keep one call's body modest.
ROWS_PER_CALL = min(MAX_ROWS_PER_CALL, 10_000)


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
        self, payload: TaskPayload, write: WriteOutput, replaced: set[tuple[int, str]]
    ) -> EmittedEvent:
        """Store one file the child wrote; `replaced` holds the (output, scope) this attempt already replaced."""
        path = Path(write.path)
        try:
            target = payload.outputs[write.output]
            if target.storage is OutputStorage.S3:
                assert target.location is not None, "a Parquet output's version has a location"
                key = location_file_key(target.location, write.scope)
                await self.store.put_file(key, path)
            elif target.storage is OutputStorage.POSTGRES:
                table = await asyncio.to_thread(pq.read_table, path)
                rows = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
                replace = payload.job.update_strategy is UpdateStrategy.REPLACE
                for start in range(0, len(rows), ROWS_PER_CALL):
                    first = (write.output, write.scope.key) not in replaced
                    await self.client.write_rows(
                        RowsRequest(
                            task_id=payload.task_id,
                            attempt_id=payload.attempt_id,
                            attempt_token=payload.attempt_token,
                            output=write.output,
                            scope=write.scope,
                            replace_scope=replace and first,
                            rows=rows[start : start + ROWS_PER_CALL],
                        )
                    )
                    replaced.add((write.output, write.scope.key))
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        return EmittedEvent(output=write.output, scope=write.scope, payload={"rows": write.rows})

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
