"""Messages between the worker wrapper and its operator child process (one JSON document per line).

The child never receives the service credential or the attempt token: it gets the task as operators see
it, and the environment of the slot (with resolved secrets) to run it in.

A child runs one task at a time (`lane` 0), or, for the built-in operators that only write files and emit events
(`cryo_ingest`), several tasks of one org's DAG at once, each on its own lane: the wrapper numbers the lane in
`RunTask`, and the child tags that task's `Emit`, `WriteOutput` and `Done` with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from trace_core.contracts._base import Contract
from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.queries import QueryPin, ResultColumn
from trace_core.contracts.tasks import OperatorTask


class RunTask(Contract):
    kind: Literal["run"] = "run"
    task: OperatorTask
    env: dict[str, str] = Field(default_factory=dict)
    lane: int = Field(0, ge=0)


class Emit(Contract):
    kind: Literal["emit"] = "emit"
    event: EmittedEvent
    lane: int = Field(0, ge=0)


class WriteOutput(Contract):
    """The child wrote `rows` rows for output `output`, scope `scope`, into the Parquet file `path` (in its
    working directory); the wrapper stores them in the output's dataset version and emits the data event."""

    kind: Literal["write"] = "write"
    output: int = Field(ge=0)
    scope: EventScope
    path: str
    rows: int = Field(ge=0)
    lane: int = Field(0, ge=0)


class NeedInput(Contract):
    """The child asks for the data of its input event's scope; the wrapper answers with `InputReady`."""

    kind: Literal["need_input"] = "need_input"


class InputReady(Contract):
    """Wrapper → child: the input scope as a Parquet file in the child's working directory, or why not."""

    kind: Literal["input"] = "input"
    path: str | None = None
    error: str | None = None


class LoadState(Contract):
    """The child asks for its job's operator state; the wrapper answers with `StateLoaded`."""

    kind: Literal["load_state"] = "load_state"


class StateLoaded(Contract):
    """Wrapper → child: the job's operator state and revision (0: none saved yet), or why it could not be read."""

    kind: Literal["state"] = "state"
    state: dict[str, Any] | None = None
    revision: int = Field(0, ge=0)
    error: str | None = None


class SaveState(Contract):
    """The child stores a new operator state computed from revision `expected_revision`, together with the events
    it accounts for (one transaction); the wrapper answers with `StateSaved`."""

    kind: Literal["save_state"] = "save_state"
    expected_revision: int = Field(ge=0)
    state: dict[str, Any]
    events: list[EmittedEvent] = Field(default_factory=list)


class StateSaved(Contract):
    """Wrapper → child: the revision now stored; or `conflict` (another writer stored `revision` first); or an
    error (`retryable` false when another attempt cannot fix it)."""

    kind: Literal["saved"] = "saved"
    revision: int = Field(0, ge=0)
    conflict: bool = False
    error: str | None = None
    retryable: bool = True


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
    lane: int = Field(0, ge=0)


class Ready(Contract):
    kind: Literal["ready"] = "ready"
    pid: int


ChildMessage = Annotated[
    Emit | WriteOutput | NeedInput | LoadState | SaveState | NeedQueryInputs | QueryResultWritten | Done | Ready,
    Field(discriminator="kind"),
]
