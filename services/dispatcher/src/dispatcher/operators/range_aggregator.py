"""`range_aggregator`: ordered per-block events in, range manifests out at fixed boundaries (SPEC §10).

`config: {range_size: N, start: S}` (start defaults to 0): the ranges are `[S + k·N, S + (k+1)·N - 1]`. A range's
manifest is emitted once its last block arrived, with the scope `{partition_key: "<start>_<end>", range: {start,
end}}`, so the same blocks give the same boundaries and keys in every run. Blocks below `start` are ignored;
the first block seen begins the first range that is emitted (the manifest names the whole range: extractors read
the chain, not the events).

An invalidation of blocks `a..b` (a reorg) moves the position back to `a`. Ranges already emitted that it
touches are remembered, and when the replacement blocks complete such a range again its manifest goes out as an
invalidation, so the job downstream rewrites it from the new branch.

The dispatcher stores the state (`operator_state`, one row per job) with the manifests it accounts for in one
transaction: a task run again finds its block already counted and emits nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dispatcher.operators.base import InputEvent, State, TaskError, job_config
from trace_core.contracts.events import EmittedEvent, EventKind, EventScope
from trace_core.dag.operators import RangeAggregatorConfig


def range_of(config: RangeAggregatorConfig, block: int) -> tuple[int, int]:
    """The fixed range `block` belongs to."""
    first = config.start + (block - config.start) // config.range_size * config.range_size
    return first, first + config.range_size - 1


@dataclass
class AggregatorState:
    next_block: int | None = None  # the block expected next; None until the first one arrives
    first_range: int | None = None  # start of the first range this job emits
    dirty: list[int] = field(default_factory=list)  # starts of emitted ranges a reorg invalidated

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> AggregatorState:
        if stored is None:
            return cls()
        return cls(stored["next_block"], stored["first_range"], list(stored["dirty"]))

    def to_json(self) -> dict[str, Any]:
        return {"next_block": self.next_block, "first_range": self.first_range, "dirty": sorted(self.dirty)}


def manifest(start: int, end: int, kind: EventKind) -> EmittedEvent:
    return EmittedEvent(kind=kind, scope=EventScope(partition_key=f"{start}_{end}", range={"start": start, "end": end}))


def step(
    config: RangeAggregatorConfig, state: AggregatorState, kind: EventKind, first: int, last: int
) -> list[EmittedEvent]:
    """Apply blocks `first..last` (data) or their invalidation to `state` in place; the manifests to emit.

    Raises `TaskError` (and leaves `state` as it was) when the blocks do not continue the ones counted."""
    first = max(first, config.start)
    if last < first:
        return []
    if kind is EventKind.INVALIDATION:
        if state.next_block is None or state.first_range is None or first >= state.next_block:
            return []  # nothing of it was counted yet
        emitted_end = range_of(config, state.next_block)[0]  # ranges ending before it were emitted
        start = range_of(config, first)[0]
        state.dirty = sorted(
            set(state.dirty) | set(range(max(start, state.first_range), emitted_end, config.range_size))
        )
        state.next_block = first
        return []
    if state.next_block is None:
        state.next_block = first
        state.first_range = range_of(config, first)[0]
    if last < state.next_block:
        return []  # counted already (a task run again, a replayed event)
    if first > state.next_block:
        raise TaskError(
            f"range_aggregator: blocks {first}..{last} arrived but block {state.next_block} comes next; its input "
            "must be per-block events in order (a block_follower)"
        )
    emitted = []
    range_start, range_end = range_of(config, state.next_block)
    while range_end <= last:
        dirty = range_start in state.dirty
        if dirty:
            state.dirty.remove(range_start)
        emitted.append(manifest(range_start, range_end, EventKind.INVALIDATION if dirty else EventKind.DATA))
        range_start, range_end = range_start + config.range_size, range_end + config.range_size
    state.next_block = last + 1
    return emitted


class Aggregation:
    """A pass over the job's tasks: each applied to the state the one before left."""

    def __init__(self, config: dict[str, Any], stored: State) -> None:
        self.config = job_config(RangeAggregatorConfig, "range_aggregator", config)
        self._state = AggregatorState.from_json(stored)

    def apply(self, event: InputEvent | None) -> list[EmittedEvent]:
        if event is None or event.range is None:
            raise TaskError("range_aggregator: its input events must carry a block range")
        return step(self.config, self._state, event.kind, *event.range)

    def state(self) -> State:
        return self._state.to_json()
