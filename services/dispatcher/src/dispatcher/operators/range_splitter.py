"""`range_splitter`: the inverse of `range_aggregator` (SPEC §10): a range event becomes one event per unit.

An event for `range {start, end}` gives one event of the same kind per unit `n`, scope `range {n, n}`, payload
`{"unit": n}`, in order. Each input event is its own task, so the events of a range re-emitted after an
invalidation are new events, and those of a task run again are deduplicated. `config.max_units` (default
100,000) bounds a range, so a mistaken input cannot flood the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dispatcher.operators.base import InputEvent, Outcome, State, TaskError
from trace_core.contracts.events import EmittedEvent, EventKind, EventScope
from trace_core.dag.operators import RangeSplitterConfig, parse_config


def run(config: dict[str, Any], stored: State, inputs: Sequence[InputEvent | None]) -> tuple[State, list[Outcome]]:
    """Each task on its own: the splitter keeps no state."""
    try:
        parsed = parse_config(RangeSplitterConfig, "range_splitter", config)
    except ValueError as error:
        return stored, [TaskError(f"range_splitter: {error}")] * len(inputs)
    return stored, [_split(parsed, event) for event in inputs]


def _split(config: RangeSplitterConfig, event: InputEvent | None) -> Outcome:
    if event is None or event.range is None:
        return TaskError("range_splitter: its input events must carry a range")
    start, end = event.range
    units = end - start + 1
    if units > config.max_units:
        return TaskError(
            f"range_splitter: range {start}..{end} has {units} units, more than config.max_units ({config.max_units})"
        )
    return _units(event.kind, start, end)


def _units(kind: EventKind, start: int, end: int) -> list[EmittedEvent]:
    return [
        EmittedEvent(kind=kind, scope=EventScope(range={"start": unit, "end": unit}), payload={"unit": unit})
        for unit in range(start, end + 1)
    ]
