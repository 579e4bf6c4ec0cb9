"""Invalidations through a job (SPEC §7), applied by the wrapper so every operator gets them.

A task whose input event is an invalidation reprocesses that scope. In a job with `update_strategy: replace`:

- what it writes replaces the scope in the output, and the event of the write is an invalidation, not data;
- an event it emits for the input event's scope goes out as an invalidation;
- a stored output it did not write at all has the input scope cleared (the recomputed scope is empty) and gets
  an invalidation for it, so the cascade never stops at a job that happened to write nothing.

With `update_strategy: append` nothing is deleted: writes insert (deduplicated on `unique_key`) and their
events are data, as always.
"""

from __future__ import annotations

from trace_core.contracts.events import EmittedEvent, EventKind
from trace_core.contracts.tasks import OperatorTask
from trace_core.dag.config import UpdateStrategy


def rewrites_invalidation(task: OperatorTask) -> bool:
    """The task reprocesses an invalidated scope of a replace job."""
    event = task.input_event
    return (
        event is not None
        and event.kind is EventKind.INVALIDATION
        and task.job.update_strategy is UpdateStrategy.REPLACE
    )


def written_kind(task: OperatorTask) -> EventKind:
    """The kind of the event a write of this task emits."""
    return EventKind.INVALIDATION if rewrites_invalidation(task) else EventKind.DATA


def cascaded(task: OperatorTask, event: EmittedEvent) -> EmittedEvent:
    """`event` as it goes out: a data event for the input scope of a task rewriting an invalidation becomes one."""
    if (
        event.kind is EventKind.DATA
        and rewrites_invalidation(task)
        and task.input_event is not None
        and event.scope.key == task.input_event.scope.key
    ):
        return event.model_copy(update={"kind": EventKind.INVALIDATION})
    return event
