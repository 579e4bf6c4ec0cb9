"""`range_splitter`: the inverse of `range_aggregator` (SPEC §10): a range event becomes one event per unit.

An event for `range {start, end}` gives one event of the same kind per unit `n`, scope `range {n, n}`, payload
`{"unit": n}`, in order. Each input event is its own task, so the events of a range re-emitted after an
invalidation are new events, and a retried task's are deduplicated. `config.max_units` (default 100,000)
bounds a range, so a mistaken input cannot flood the queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from trace_core.contracts.events import EmittedEvent, EventKind, EventScope
from trace_core.dag.operators import RangeSplitterConfig
from worker.operators import EventLike, OperatorContext, OperatorError, operator_config


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    config = operator_config(ctx, RangeSplitterConfig)
    event = ctx.task.input_event
    if event is None or event.scope.range is None:
        raise OperatorError("range_splitter: its input events must carry a range", retryable=False)
    span = event.scope.range
    units = span.end - span.start + 1
    if units > config.max_units:
        raise OperatorError(
            f"range_splitter: range {span.start}..{span.end} has {units} units, more than config.max_units "
            f"({config.max_units})",
            retryable=False,
        )
    return _units(event.kind, span.start, span.end)


def _units(kind: EventKind, start: int, end: int) -> Iterator[EmittedEvent]:
    for unit in range(start, end + 1):
        yield EmittedEvent(kind=kind, scope=EventScope(range={"start": unit, "end": unit}), payload={"unit": unit})
