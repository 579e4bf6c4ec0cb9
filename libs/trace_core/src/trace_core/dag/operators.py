"""The configs of built-in operators, one model each: the DAG validation reports a bad config at deploy time
with its field path, and the operator parses its config with the same model when it runs.

Operators not listed here (user UDFs under `python`, operators of later issues) take any config.

`range_aggregator` and `range_splitter` run inside the dispatcher (`DISPATCHER_OPERATORS`): their tasks have the
runtime `dispatcher`, which no worker serves, and the DAG may not choose a runtime, pool or activation for them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError

Path = tuple[str | int, ...]

# Operators the platform runs inside the dispatcher: a task of one is a few microseconds of arithmetic over its
# input event and the job's state, far less than a worker's round trip (docs/chain.md).
DISPATCHER_OPERATORS = frozenset({"range_aggregator", "range_splitter"})
DISPATCHER_RUNTIME = "dispatcher"


def _number(value: Any) -> Any:
    """Seconds given as a number: YAML `1` and `0.5` are fine, `"1"` and `true` are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number", "must be a number, got {value}", {"value": repr(value)})
    return value


Seconds = Annotated[float, BeforeValidator(_number)]


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlockFollowerConfig(OperatorConfig):
    """`block_follower`: follows a chain's head over JSON-RPC."""

    rpc_url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)] | None = None
    confirmations: Annotated[StrictInt, Field(ge=0, le=100_000)] = 0
    start_block: Annotated[StrictInt, Field(ge=0)] = 0
    end_block: Annotated[StrictInt, Field(ge=0)] | None = None
    poll_interval_s: Annotated[Seconds, Field(gt=0, le=3600)] = 1.0
    batch_blocks: Annotated[StrictInt, Field(ge=1, le=1000)] = 100
    reorg_window: Annotated[StrictInt, Field(ge=1, le=10_000)] = 128
    rpc_timeout_s: Annotated[Seconds, Field(gt=0, le=300)] = 10.0
    rpc_retries: Annotated[StrictInt, Field(ge=0, le=10)] = 2

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_block is not None and self.end_block < self.start_block:
            raise PydanticCustomError(
                "end_block",
                "end_block {end} is before start_block {start}",
                {"end": self.end_block, "start": self.start_block},
            )
        return self


class RangeAggregatorConfig(OperatorConfig):
    """`range_aggregator`: ranges `[start + k·range_size, start + (k+1)·range_size - 1]`."""

    range_size: Annotated[StrictInt, Field(ge=1, le=100_000_000)]
    start: Annotated[StrictInt, Field(ge=0)] = 0


class RangeSplitterConfig(OperatorConfig):
    """`range_splitter`: one event per unit of each input range, at most `max_units` per range."""

    max_units: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 100_000


class CryoIngestConfig(OperatorConfig):
    """`cryo_ingest`: extracts each input range with cryo; the RPC is `rpc_url`, else the slot's `RPC_URL`, and
    either may name slot variables as `${NAME}`."""

    datatype: Literal["blocks", "transactions", "logs"]
    rpc_url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)] | None = None
    max_concurrent_requests: Annotated[StrictInt, Field(ge=1, le=1024)] = 16


class SqlConfig(OperatorConfig):
    query: Annotated[str, Field(min_length=1)]


class PythonConfig(OperatorConfig):
    """`python`: the rest of the config is the user function's."""

    model_config = ConfigDict(extra="allow", frozen=True)

    function: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]


OPERATOR_CONFIGS: dict[str, type[OperatorConfig]] = {
    "block_follower": BlockFollowerConfig,
    "range_aggregator": RangeAggregatorConfig,
    "range_splitter": RangeSplitterConfig,
    "cryo_ingest": CryoIngestConfig,
    "sql": SqlConfig,
    "python": PythonConfig,
}


def config_problems(operator: str, config: dict[str, Any]) -> list[tuple[Path, str]]:
    """`(path inside config, message)` for each problem of a built-in operator's config."""
    model = OPERATOR_CONFIGS.get(operator)
    if model is None:
        return []
    try:
        model.model_validate(config)
    except ValidationError as error:
        return [_problem(operator, model, e) for e in error.errors()]
    return []


def _problem(operator: str, model: type[OperatorConfig], error: Any) -> tuple[Path, str]:
    path: Path = tuple(part for part in error["loc"] if isinstance(part, str | int))
    if error["type"] == "extra_forbidden":
        known = ", ".join(model.model_fields)
        return path, f"unknown key {path[-1]!r} of operator {operator} (it takes: {known})"
    if error["type"] == "missing":
        return path, f"operator {operator} needs this field"
    if error["type"] == "string_pattern_mismatch" and path == ("rpc_url",):
        return path, f"must be an http:// or https:// URL, got {error['input']!r}"
    if error["type"] == "string_pattern_mismatch" and path == ("function",):
        return path, f"must be 'module:function', got {error['input']!r}"
    return path, str(error["msg"]).removeprefix("Value error, ")


Config = TypeVar("Config", bound=OperatorConfig)


def parse_config(model: type[Config], operator: str, config: dict[str, Any]) -> Config:
    """`config` as `model`, or `ValueError` listing each problem as `config.<field>: <message>`."""
    try:
        return model.model_validate(config)
    except ValidationError as error:
        problems = [_problem(operator, model, e) for e in error.errors()]
        raise ValueError(
            "; ".join(f"config.{'.'.join(str(p) for p in path) or '<config>'}: {message}" for path, message in problems)
        ) from None
