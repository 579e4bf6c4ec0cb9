"""`noop`: does nothing and emits one data event for its input's scope (a source run emits none)."""

from __future__ import annotations

from collections.abc import Iterable

from trace_core.contracts.events import EmittedEvent
from worker.operators import EventLike, OperatorContext


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    event = ctx.task.input_event
    if event is None:
        return None
    return [EmittedEvent(scope=event.scope, payload={})]
