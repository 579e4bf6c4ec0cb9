"""Operators the dispatcher runs itself (`trace_core.dag.operators.DISPATCHER_OPERATORS`), by name."""

from dispatcher.operators import range_aggregator, range_splitter
from dispatcher.operators.base import Run

OPERATORS: dict[str, Run] = {"range_aggregator": range_aggregator.run, "range_splitter": range_splitter.run}
