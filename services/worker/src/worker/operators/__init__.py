"""Built-in operators and the context every operator runs with.

An operator is a function `run(ctx: OperatorContext) -> Iterable[EmittedEvent | dict] | None`: events it
returns (or yields) and events it passes to `ctx.emit` go to the dispatcher through the wrapper. Rows it
passes to `ctx.write` go to an output's dataset version (Parquet in the object store, or a Postgres table);
`ctx.read_input()` gives the rows of the input event's scope. The Query Service's `duckdb_query` reads its
query's pinned datasets with `ctx.query_inputs()` and hands its result file to `ctx.store_query_result()`.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import pyarrow as pa

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.operator import QueryInputsReady, QueryResultWritten
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
    write_callback: Callable[[pa.Table, int, EventScope], None]
    input_callback: Callable[[], pa.Table]
    query_inputs_callback: Callable[[], QueryInputsReady]
    query_result_callback: Callable[[QueryResultWritten], None]

    @property
    def config(self) -> dict[str, Any]:
        return self.task.job.config

    def emit(self, event: EventLike) -> None:
        self.emit_callback(event if isinstance(event, EmittedEvent) else EmittedEvent.model_validate(event))

    def write(self, rows: Rows, output: int = 0, scope: EventScope | dict[str, Any] | None = None) -> None:
        """Store `rows` in output `output` for `scope` (default: the input event's scope), then emit its data
        event. With `update_strategy: replace`, the first write of a scope in an attempt replaces what earlier
        attempts or tasks wrote for it."""
        if output >= len(self.task.outputs) or self.task.outputs[output].storage is OutputStorage.NONE:
            stored = [o.index for o in self.task.outputs if o.storage is not OutputStorage.NONE]
            raise OperatorError(
                f"write: output {output} stores no rows (outputs with storage: {stored})", retryable=False
            )
        if scope is None:
            if self.task.input_event is None:
                raise OperatorError("write: a source task must give the scope of the rows it writes", retryable=False)
            scope = self.task.input_event.scope
        table = rows if isinstance(rows, pa.Table) else _table(list(rows))
        self.write_callback(table, output, scope if isinstance(scope, EventScope) else EventScope.model_validate(scope))

    def read_input(self) -> pa.Table:
        """The rows of the input event's scope, from the input dataset's version."""
        if self.task.input_event is None:
            raise OperatorError("read_input: a source task has no input", retryable=False)
        return self.input_callback()

    def query_inputs(self) -> QueryInputsReady:
        """The batch query's pinned datasets, staged as Parquet folders under a directory the child may read."""
        if self.task.query is None:
            raise OperatorError("query_inputs: this task runs no batch query", retryable=False)
        return self.query_inputs_callback()

    def store_query_result(self, written: QueryResultWritten) -> None:
        """Hand the result file to the wrapper, which stores it as this attempt's result."""
        self.query_result_callback(written)


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
    from worker.operators import duckdb_query, noop, python, sql

    return {"noop": noop.run, "python": python.run, "sql": sql.run, "duckdb_query": duckdb_query.run}
