"""Built-in operators and the context every operator runs with.

An operator is a function `run(ctx: OperatorContext) -> Iterable[EmittedEvent | dict] | None`: events it
returns (or yields) and events it passes to `ctx.emit` go to the dispatcher through the wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from trace_core.contracts.events import EmittedEvent
from trace_core.contracts.tasks import OperatorTask

EventLike = EmittedEvent | dict[str, Any]
Operator = Callable[["OperatorContext"], Iterable[EventLike] | None]


class OperatorError(Exception):
    """An operator failure with a clear message; `retryable=False` when another attempt cannot fix it."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class OperatorContext:
    task: OperatorTask
    emit_callback: Callable[[EmittedEvent], None]

    @property
    def config(self) -> dict[str, Any]:
        return self.task.job.config

    def emit(self, event: EventLike) -> None:
        self.emit_callback(event if isinstance(event, EmittedEvent) else EmittedEvent.model_validate(event))


def registry() -> dict[str, Operator]:
    from worker.operators import noop, python

    return {"noop": noop.run, "python": python.run}
