"""Operators the dispatcher runs itself (`trace_core.dag.operators.DISPATCHER_OPERATORS`), by name."""

from dispatcher.operators.base import Start
from dispatcher.operators.range_aggregator import Aggregation
from dispatcher.operators.range_splitter import Splitting

OPERATORS: dict[str, Start] = {"range_aggregator": Aggregation, "range_splitter": Splitting}
