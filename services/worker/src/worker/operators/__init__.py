"""Built-in operators and the context every operator runs with.

An operator is a function `run(ctx: OperatorContext) -> Iterable[EmittedEvent | dict] | None`: events it
returns (or yields) and events it passes to `ctx.emit` go to the dispatcher through the wrapper. Rows it
passes to `ctx.write` (or a Parquet file it made, to `ctx.write_file`) go to an output's dataset version
(Parquet in the object store, or a Postgres table); `ctx.read_input()` gives the rows of the input event's scope.
"""

from __future__ import annotations

import decimal
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.tasks import OperatorTask, OutputStorage

EventLike = EmittedEvent | dict[str, Any]
Operator = Callable[["OperatorContext"], Iterable[EventLike] | None]


class OperatorError(Exception):
    """An operator failure with a clear message; `retryable=False` when another attempt cannot fix it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


Rows: TypeAlias = pa.Table | Iterable[dict[str, Any]]


@dataclass
class OperatorContext:
    task: OperatorTask
    emit_callback: Callable[[EmittedEvent], None]
    # (Parquet file in the working directory, its rows, output, scope): the wrapper stores it, then emits
    write_callback: Callable[[Path, int, int, EventScope], None]
    input_callback: Callable[[], pa.Table]

    @property
    def config(self) -> dict[str, Any]:
        return self.task.job.config

    def emit(self, event: EventLike) -> None:
        self.emit_callback(event if isinstance(event, EmittedEvent) else EmittedEvent.model_validate(event))

    def write(self, rows: Rows, output: int = 0, scope: EventScope | dict[str, Any] | None = None) -> None:
        """Store `rows` in output `output` for `scope` (default: the input event's scope), then emit its data
        event. With `update_strategy: replace`, the first write of a scope in an attempt replaces what earlier
        attempts or tasks wrote for it."""
        target = self._target(output, scope)
        table = rows if isinstance(rows, pa.Table) else _table(list(rows))
        path = Path.cwd() / f"output-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, path)
        self.write_callback(path, table.num_rows, output, target)

    def write_file(self, path: Path, output: int = 0, scope: EventScope | dict[str, Any] | None = None) -> int:
        """Store the Parquet file `path` (made by the operator in its working directory, e.g. by cryo) as `write`
        stores rows, without reading it into memory; the file is moved away (consumed). Returns its row count."""
        target = self._target(output, scope)
        rows: int = pq.read_metadata(path).num_rows
        # the wrapper stores the file after this returns: move it where the operator's own clean-up cannot reach
        handed = Path.cwd() / f"output-{uuid.uuid4().hex}.parquet"
        os.replace(path, handed)
        self.write_callback(handed, rows, output, target)
        return rows

    def _target(self, output: int, scope: EventScope | dict[str, Any] | None) -> EventScope:
        """The scope a write goes to, once `output` is known to store rows."""
        if output >= len(self.task.outputs) or self.task.outputs[output].storage is OutputStorage.NONE:
            stored = [o.index for o in self.task.outputs if o.storage is not OutputStorage.NONE]
            raise OperatorError(
                f"write: output {output} stores no rows (outputs with storage: {stored})", retryable=False
            )
        if scope is None:
            if self.task.input_event is None:
                raise OperatorError("write: a source task must give the scope of the rows it writes", retryable=False)
            return self.task.input_event.scope
        return scope if isinstance(scope, EventScope) else EventScope.model_validate(scope)

    def read_input(self) -> pa.Table:
        """The rows of the input event's scope, from the input dataset's version."""
        if self.task.input_event is None:
            raise OperatorError("read_input: a source task has no input", retryable=False)
        return self.input_callback()


_INT64 = range(-(2**63), 2**63)
_DECIMAL38 = 10**38


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as an Arrow table, with every key any row has as a column."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: _array([row.get(name) for row in rows]) for name in names})


def _array(values: list[Any]) -> pa.Array:
    """Integers beyond 64 bits (wei amounts) become DECIMAL(38, 0), or text past 38 digits."""
    wide = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v not in _INT64]
    if not wide:
        return pa.array(values)
    if all(abs(v) < _DECIMAL38 for v in wide):
        return pa.array([None if v is None else decimal.Decimal(v) for v in values], pa.decimal128(38, 0))
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def registry() -> dict[str, Operator]:
    from worker.operators import cryo_ingest, noop, python, sql

    return {"noop": noop.run, "python": python.run, "sql": sql.run, "cryo_ingest": cryo_ingest.run}
