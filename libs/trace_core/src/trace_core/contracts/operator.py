"""Messages between the worker wrapper and its operator child process (one JSON document per line).

The child never receives the service credential or the attempt token: it gets the task as operators see
it, and the environment of the slot (with resolved secrets) to run it in.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from trace_core.contracts._base import Contract
from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.queries import QueryPin, ResultColumn
from trace_core.contracts.tasks import OperatorTask


class RunTask(Contract):
    kind: Literal["run"] = "run"
    task: OperatorTask
    env: dict[str, str] = Field(default_factory=dict)


class Emit(Contract):
    kind: Literal["emit"] = "emit"
    event: EmittedEvent


class WriteOutput(Contract):
    """The child wrote `rows` rows for output `output`, scope `scope`, into the Parquet file `path` (in its
    working directory); the wrapper stores them in the output's dataset version and emits the data event."""

    kind: Literal["write"] = "write"
    output: int = Field(ge=0)
    scope: EventScope
    path: str
    rows: int = Field(ge=0)


class NeedInput(Contract):
    """The child asks for the data of its input event's scope; the wrapper answers with `InputReady`."""

    kind: Literal["need_input"] = "need_input"


class InputReady(Contract):
    """Wrapper → child: the input scope as a Parquet file in the child's working directory, or why not."""

    kind: Literal["input"] = "input"
    path: str | None = None
    error: str | None = None


class NeedQueryInputs(Contract):
    """The child (`duckdb_query`) asks for its query's pinned datasets; the wrapper answers with `QueryInputsReady`."""

    kind: Literal["need_query_inputs"] = "need_query_inputs"


class QueryInputsReady(Contract):
    """Wrapper → child: the pinned datasets staged as Parquet under `root` (a directory the child may read), each
    with its `location` relative to `root`; or why not."""

    kind: Literal["query_inputs"] = "query_inputs"
    root: str | None = None
    datasets: list[QueryPin] = Field(default_factory=list)
    error: str | None = None


class QueryResultWritten(Contract):
    """The child wrote its query's result (`rows` rows) into the Parquet file `path`; the wrapper stores it as the
    attempt's result and records it."""

    kind: Literal["query_result"] = "query_result"
    path: str
    rows: int = Field(ge=0)
    truncated: bool
    columns: list[ResultColumn]


class Done(Contract):
    kind: Literal["done"] = "done"
    status: Literal["succeeded", "failed"]
    error: str | None = None
    retryable: bool = True


class Ready(Contract):
    kind: Literal["ready"] = "ready"
    pid: int


ChildMessage = Annotated[
    Emit | WriteOutput | NeedInput | NeedQueryInputs | QueryResultWritten | Done | Ready, Field(discriminator="kind")
]
