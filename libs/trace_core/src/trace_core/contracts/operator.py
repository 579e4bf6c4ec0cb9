"""Messages between the worker wrapper and its operator child process (one JSON document per line).

The child never receives the service credential or the attempt token: it gets the task as operators see
it, and the environment of the slot (with resolved secrets) to run it in.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from trace_core.contracts._base import Contract
from trace_core.contracts.events import EmittedEvent
from trace_core.contracts.tasks import OperatorTask


class RunTask(Contract):
    kind: Literal["run"] = "run"
    task: OperatorTask
    env: dict[str, str] = Field(default_factory=dict)


class Emit(Contract):
    kind: Literal["emit"] = "emit"
    event: EmittedEvent


class Done(Contract):
    kind: Literal["done"] = "done"
    status: Literal["succeeded", "failed"]
    error: str | None = None
    retryable: bool = True


class Ready(Contract):
    kind: Literal["ready"] = "ready"
    pid: int


ChildMessage = Annotated[Emit | Done | Ready, Field(discriminator="kind")]
