"""Pydantic models of the DAG YAML (SPEC §3): types, defaults and single-field rules.

Rules that relate fields to each other (wiring, cycles, pools, publishing) live in `trace_core.dag.validate`
so each can report the exact field it is about.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from trace_core import naming
from trace_core.dag.operators import DISPATCHER_OPERATORS, DISPATCHER_RUNTIME


class _Strict(BaseModel):
    # Unknown keys are errors (SPEC §3); models are values once loaded.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Activation(StrEnum):
    SOURCE = "source"
    REACTIVE = "reactive"


class Runtime(StrEnum):
    ECS_PYTHON = "ecs_python"
    LAMBDA_PY = "lambda_py"


# Runtime names the worker contract is designed for but Trace does not ship yet.
UNAVAILABLE_RUNTIMES = frozenset({"lambda", "lambda_rs", "ecs_rust"})


class ExecutionStrategy(StrEnum):
    PER_UPDATE = "PerUpdate"
    PER_PARTITION = "PerPartition"


class UpdateStrategy(StrEnum):
    REPLACE = "replace"
    APPEND = "append"


class Storage(StrEnum):
    POSTGRES = "postgres"
    S3 = "s3"


class WriteMode(StrEnum):
    BUFFERED = "buffered"
    DIRECT = "direct"


class FileFormat(StrEnum):
    PARQUET = "parquet"


def check_name(value: str, pattern: re.Pattern[str], what: str) -> str:
    """Raise a validation error naming the rule when `value` does not match `pattern`."""
    if not pattern.match(value):
        raise PydanticCustomError(
            "name_pattern",
            "{what} {value} must match {pattern}",
            {"what": what, "value": repr(value), "pattern": pattern.pattern},
        )
    return value


class Slot(_Strict):
    """One worker-pool slot: plain env, and env filled from secrets (values are secret paths)."""

    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("secret_env")
    @classmethod
    def _secret_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for var, path in value.items():
            if not path.startswith(("user/", "platform/")) or ".." in path.split("/"):
                raise PydanticCustomError(
                    "secret_path",
                    "secret_env.{var}: {path} must be a secret path under user/ or platform/",
                    {"var": var, "path": repr(path)},
                )
        return value


class InputRef(_Strict):
    """Where an input comes from: an output of a job of this DAG, or a published dataset of another DAG."""

    job: str | None = None
    output: int = Field(0, ge=0)
    dataset: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputRef:
        if (self.job is None) == (self.dataset is None):
            raise PydanticCustomError("input_source", "give exactly one of `job` (with `output`) or `dataset`")
        if self.dataset is not None and "output" in self.model_fields_set:
            raise PydanticCustomError("input_source", "`output` goes with `job`, not with `dataset`")
        if self.dataset is not None:
            check_name(self.dataset, naming.DATASET_NAME, "dataset name")
        return self


class Input(_Strict):
    from_: InputRef = Field(alias="from")


class Output(_Strict):
    """A stored output. A job without `outputs` has one output that carries events only."""

    storage: Storage
    format: FileFormat | None = None
    write_mode: WriteMode | None = None
    unique_key: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _storage_fields(self) -> Output:
        if self.storage is Storage.S3 and self.write_mode is not None:
            raise PydanticCustomError("output_fields", "`write_mode` applies to postgres outputs, not s3")
        if self.storage is Storage.POSTGRES and self.format is not None:
            raise PydanticCustomError("output_fields", "`format` applies to s3 outputs, not postgres")
        if len(set(self.unique_key)) != len(self.unique_key):
            raise PydanticCustomError("output_fields", "`unique_key` names a column twice")
        return self

    @property
    def effective_format(self) -> FileFormat | None:
        return (self.format or FileFormat.PARQUET) if self.storage is Storage.S3 else None

    @property
    def effective_write_mode(self) -> WriteMode | None:
        return (self.write_mode or WriteMode.DIRECT) if self.storage is Storage.POSTGRES else None


class Scaling(_Strict):
    max_concurrency: int = Field(1, ge=1, le=10_000)
    mode: str | None = None  # accepted and ignored (SPEC §3)


class Job(_Strict):
    activation: Activation = Activation.REACTIVE
    runtime: str = Runtime.ECS_PYTHON.value
    operator: str = Field(min_length=1, max_length=128)
    config: dict[str, Any] = Field(default_factory=dict)
    inputs: list[Input] = Field(default_factory=list)
    outputs: list[Output] = Field(default_factory=list)
    execution_strategy: str = ExecutionStrategy.PER_UPDATE.value
    update_strategy: UpdateStrategy = UpdateStrategy.REPLACE
    worker_pool: str | None = None
    scaling: Scaling = Field(default_factory=Scaling)
    timeout_s: int = Field(900, ge=1, le=7 * 24 * 3600)
    max_attempts: int = Field(3, ge=1, le=100)

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str) -> str:
        if value in UNAVAILABLE_RUNTIMES:
            raise PydanticCustomError(
                "runtime_unavailable",
                "runtime {value} is not available yet; use ecs_python or lambda_py",
                {"value": repr(value)},
            )
        if value not in {r.value for r in Runtime}:
            raise PydanticCustomError(
                "runtime_unknown",
                "unknown runtime {value}; use ecs_python or lambda_py",
                {"value": repr(value)},
            )
        return value

    @field_validator("execution_strategy")
    @classmethod
    def _execution_strategy(cls, value: str) -> str:
        if value == "Bulk":
            raise PydanticCustomError(
                "bulk_unsupported",
                "execution_strategy Bulk is not supported: model batching with a range_aggregator job "
                "upstream and PerPartition here",
            )
        if value not in {s.value for s in ExecutionStrategy}:
            raise PydanticCustomError(
                "execution_strategy",
                "execution_strategy must be PerUpdate or PerPartition, got {value}",
                {"value": repr(value)},
            )
        return value

    @property
    def task_runtime(self) -> str:
        """The runtime its tasks run on: the dispatcher's own for its operators, else `runtime`. `runtime` stays
        the YAML's (part of the materialization fingerprint), so a job moved into the dispatcher keeps its row."""
        return DISPATCHER_RUNTIME if self.operator in DISPATCHER_OPERATORS else self.runtime

    @property
    def output_count(self) -> int:
        """Number of outputs; a job without `outputs` still has its events-only output 0."""
        return max(1, len(self.outputs))


class Publish(_Strict):
    job: str
    output: int = Field(0, ge=0)
    dataset: str

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        return check_name(value, naming.DATASET_NAME, "dataset name")


class DagConfig(_Strict):
    dag: str
    worker_pools: dict[str, list[Slot]] = Field(default_factory=dict)
    jobs: dict[str, Job] = Field(min_length=1)
    publish: list[Publish] = Field(default_factory=list)

    @field_validator("dag")
    @classmethod
    def _dag_name(cls, value: str) -> str:
        return check_name(value, naming.DAG_NAME, "DAG name")

    def upstream_jobs(self, job_name: str) -> list[str]:
        """Jobs of this DAG that `job_name` reads from, in input order."""
        return [i.from_.job for i in self.jobs[job_name].inputs if i.from_.job is not None]
