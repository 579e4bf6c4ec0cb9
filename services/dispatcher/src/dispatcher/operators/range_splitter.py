"""`range_splitter`: the inverse of `range_aggregator` (SPEC §10): a range event becomes one event per unit.

An event for `range {start, end}` gives one event of the same kind per unit `n`, scope `range {n, n}`, payload
`{"unit": n}`, in order. Each input event is its own task, so the events of a range re-emitted after an
invalidation are new events, and those of a task run again are deduplicated. `config.max_units` (default
100,000) bounds a range, so a mistaken input cannot flood the queue.
"""

from __future__ import annotations

from typing import Any

from dispatcher.operators.base import InputEvent, State, TaskError, job_config
from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.dag.operators import RangeSplitterConfig


class Splitting:
    """A pass over the job's tasks, each on its own: the splitter keeps no state."""

    def __init__(self, config: dict[str, Any], stored: State) -> None:
        self.config = job_config(RangeSplitterConfig, "range_splitter", config)
        self._stored = stored

    def apply(self, event: InputEvent | None) -> list[EmittedEvent]:
        if event is None or event.range is None:
            raise TaskError("range_splitter: its input events must carry a range")
        start, end = event.range
        units = end - start + 1
        if units > self.config.max_units:
            raise TaskError(
                f"range_splitter: range {start}..{end} has {units} units, more than config.max_units "
                f"({self.config.max_units})"
            )
        return [
            EmittedEvent(kind=event.kind, scope=EventScope(range={"start": unit, "end": unit}), payload={"unit": unit})
            for unit in range(start, end + 1)
        ]

    def state(self) -> State:
        return self._stored
