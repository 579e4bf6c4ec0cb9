"""range_aggregator's arithmetic, on its pure step function: fixed boundaries, deterministic manifests, replays
that emit nothing twice, and reorgs that turn an emitted range's next manifest into an invalidation."""

from __future__ import annotations

import pytest

from dispatcher.operators.base import TaskError
from dispatcher.operators.range_aggregator import AggregatorState, step
from trace_core.contracts.events import EventKind
from trace_core.dag.operators import RangeAggregatorConfig

DATA, INVALIDATION = EventKind.DATA, EventKind.INVALIDATION


def feed(config: RangeAggregatorConfig, state: AggregatorState, *blocks: int) -> list[tuple[str, str, int, int]]:
    """Blocks one by one as data events; the manifests as (kind, partition_key, start, end)."""
    out = []
    for block in blocks:
        for event in step(config, state, DATA, block, block):
            assert event.scope.range is not None and event.scope.partition_key is not None
            out.append((event.kind.value, event.scope.partition_key, event.scope.range.start, event.scope.range.end))
    return out


def test_manifests_at_fixed_boundaries_and_the_same_for_the_same_input() -> None:
    config = RangeAggregatorConfig(range_size=4)
    runs = [feed(config, AggregatorState(), *range(0, 13)) for _ in range(2)]
    assert runs[0] == runs[1] == [("data", "0_3", 0, 3), ("data", "4_7", 4, 7), ("data", "8_11", 8, 11)]


def test_start_offsets_the_boundaries_and_earlier_blocks_are_ignored() -> None:
    config = RangeAggregatorConfig(range_size=5, start=3)
    assert feed(config, AggregatorState(), *range(0, 13)) == [("data", "3_7", 3, 7), ("data", "8_12", 8, 12)]


def test_the_first_block_seen_mid_range_still_closes_that_whole_range() -> None:
    config = RangeAggregatorConfig(range_size=10)
    assert feed(config, AggregatorState(), *range(7, 21)) == [("data", "0_9", 0, 9), ("data", "10_19", 10, 19)]


def test_a_block_counted_already_emits_nothing() -> None:
    config = RangeAggregatorConfig(range_size=2)
    state = AggregatorState()
    assert feed(config, state, 0, 1) == [("data", "0_1", 0, 1)]
    before = state.to_json()
    assert feed(config, state, 1, 0, 1) == []
    assert state.to_json() == before


def test_a_gap_is_refused_with_a_clear_error() -> None:
    config = RangeAggregatorConfig(range_size=2)
    state = AggregatorState()
    feed(config, state, 0, 1)
    before = state.to_json()
    with pytest.raises(TaskError, match=r"blocks 5\.\.5 arrived but block 2 comes next"):
        feed(config, state, 5)
    assert state.to_json() == before


def test_a_range_input_counts_every_block_of_it() -> None:
    config = RangeAggregatorConfig(range_size=3)
    state = AggregatorState()
    events = step(config, state, DATA, 0, 7)
    assert [e.scope.partition_key for e in events] == ["0_2", "3_5"]
    assert state.next_block == 8


def test_a_reorg_into_emitted_ranges_reemits_them_as_invalidations_once_replaced() -> None:
    config = RangeAggregatorConfig(range_size=4)
    state = AggregatorState()
    assert len(feed(config, state, *range(0, 10))) == 2  # 0_3 and 4_7 emitted, 8.. open
    # a reorg replaced blocks 2..9: ranges 0_3 and 4_7 were emitted with the old branch
    assert step(config, state, INVALIDATION, 2, 9) == []
    assert state.next_block == 2 and state.dirty == [0, 4]
    replayed = feed(config, state, *range(2, 13))
    assert replayed == [
        ("invalidation", "0_3", 0, 3),
        ("invalidation", "4_7", 4, 7),
        ("data", "8_11", 8, 11),  # never emitted before: its first manifest is data
    ]
    assert state.dirty == []


def test_a_reorg_of_blocks_not_yet_counted_changes_nothing() -> None:
    config = RangeAggregatorConfig(range_size=4)
    state = AggregatorState()
    feed(config, state, *range(0, 6))
    before = state.to_json()
    assert step(config, state, INVALIDATION, 6, 9) == []
    assert state.to_json() == before


def test_a_reorg_inside_the_open_range_only_moves_back() -> None:
    config = RangeAggregatorConfig(range_size=4)
    state = AggregatorState()
    feed(config, state, *range(0, 7))
    step(config, state, INVALIDATION, 5, 6)
    assert state.next_block == 5 and state.dirty == []
    assert feed(config, state, 5, 6, 7) == [("data", "4_7", 4, 7)]


def test_two_reorgs_before_the_replacement_completes_keep_the_range_dirty() -> None:
    config = RangeAggregatorConfig(range_size=4)
    state = AggregatorState()
    feed(config, state, *range(0, 8))
    step(config, state, INVALIDATION, 6, 7)
    feed(config, state, 6)
    step(config, state, INVALIDATION, 5, 6)
    assert state.dirty == [4]
    assert feed(config, state, 5, 6, 7) == [("invalidation", "4_7", 4, 7)]
