"""Built-in operators and the context every operator runs with.

An operator is a function `run(ctx: OperatorContext) -> Iterable[EmittedEvent | dict] | None`: events it
returns (or yields) and events it passes to `ctx.emit` go to the dispatcher through the wrapper. Rows it
passes to `ctx.write` (or a Parquet file it made, to `ctx.write_file`) go to an output's dataset version
(Parquet in the object store, or a Postgres table); `ctx.read_input()` gives the rows of the input event's scope.
Stateful operators keep durable state per job with `ctx.load_state()` and `ctx.save_state(...)`, a
compare-and-swap that stores the events the new state accounts for in the same transaction. The Query Service's
`duckdb_query` reads its query's pinned datasets with `ctx.query_inputs()` and hands its result file to
`ctx.store_query_result()`.
"""

from __future__ import annotations

import decimal
import importlib
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.operator import QueryInputsReady, QueryResultWritten
from trace_core.contracts.tasks import OperatorTask, OutputStorage
from trace_core.dag.operators import Config, parse_config

EventLike = EmittedEvent | dict[str, Any]
Operator = Callable[["OperatorContext"], Iterable[EventLike] | None]


class OperatorError(Exception):
    """An operator failure with a clear message; `retryable=False` when another attempt cannot fix it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class StateConflictError(OperatorError):
    """Another writer saved the job's operator state since it was read: read it again and recompute."""


@dataclass(frozen=True)
class StoredState:
    """A job's operator state as stored: `state` is None and `revision` 0 until the first save."""

    state: dict[str, Any] | None
    revision: int


Rows: TypeAlias = pa.Table | Iterable[dict[str, Any]]


@dataclass
class OperatorContext:
    task: OperatorTask
    emit_callback: Callable[[EmittedEvent], None]
    # (Parquet file in the working directory, its rows, output, scope): the wrapper stores it, then emits
    write_callback: Callable[[Path, int, int, EventScope], None]
    input_callback: Callable[[], pa.Table]
    query_inputs_callback: Callable[[], QueryInputsReady]
    query_result_callback: Callable[[QueryResultWritten], None]
    load_state_callback: Callable[[], StoredState]
    save_state_callback: Callable[[dict[str, Any], int, list[EmittedEvent]], int]
    # the slot's environment (resolved secrets included) over the child's: tasks sharing a child each have their own,
    # so an operator that may share (cryo_ingest) reads it here, not from os.environ
    env: Mapping[str, str]

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

    def load_state(self) -> StoredState:
        """The job's durable operator state (kept across attempts, tasks and deploys that keep the job)."""
        return self.load_state_callback()

    def save_state(self, state: dict[str, Any], *, revision: int, events: Iterable[EventLike] = ()) -> int:
        """Store `state`, computed from `revision`, and emit `events` in the same transaction; the new revision.

        Raises `StateConflictError` when another writer saved since `revision` (nothing is stored then)."""
        emitted = [e if isinstance(e, EmittedEvent) else EmittedEvent.model_validate(e) for e in events]
        return self.save_state_callback(state, revision, emitted)

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


def operator_config(ctx: OperatorContext, model: type[Config]) -> Config:
    """The job's config as the built-in operator's model (the DAG validation checked it with the same one)."""
    try:
        return parse_config(model, ctx.task.job.operator, ctx.config)
    except ValueError as error:
        raise OperatorError(str(error), retryable=False) from None


# Built-in operators by name, each imported when a task first runs it: a child (a Lambda cold start above all)
# pays for the libraries of the operators it runs (cryo, DuckDB, httpx...), not of every one.
OPERATORS = {
    "noop": "worker.operators.noop",
    "python": "worker.operators.python",
    "sql": "worker.operators.sql",
    "block_follower": "worker.operators.block_follower",
    "cryo_ingest": "worker.operators.cryo_ingest",
    "duckdb_query": "worker.operators.duckdb_query",
}


def load_operator(name: str) -> Operator | None:
    """The built-in operator `name`, or None when there is none of that name."""
    module = OPERATORS.get(name)
    if module is None:
        return None
    run: Operator = importlib.import_module(module).run
    return run
