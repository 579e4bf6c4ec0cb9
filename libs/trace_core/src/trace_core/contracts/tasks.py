"""Tasks, attempts and the task payload a worker receives from `task-fetch` (SPEC §4)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from trace_core.contracts._base import Contract
from trace_core.contracts.events import Event, EventScope
from trace_core.contracts.queries import BatchQuery
from trace_core.dag.config import (
    Activation,
    ExecutionStrategy,
    FileFormat,
    Runtime,
    UpdateStrategy,
    WriteMode,
)
from trace_core.storage import location_file_key


class TaskStatus(StrEnum):
    QUEUED = "Queued"  # ready (or waiting for its retry time) in Postgres
    DISPATCHED = "Dispatched"  # handed to the transport, no attempt started yet
    RUNNING = "Running"  # an attempt holds the lease
    COMPLETED = "Completed"
    FAILED = "Failed"  # dead: max_attempts used up, or failed without retry
    CANCELED = "Canceled"

    @property
    def is_terminal(self) -> bool:
        return self in {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELED}


class AttemptStatus(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELED = "Canceled"


class OutputStorage(StrEnum):
    POSTGRES = "postgres"
    S3 = "s3"
    NONE = "none"  # events-only output


class JobSpec(Contract):
    """What a worker needs to know of the job it runs (materialization fields plus its timeout)."""

    name: str
    activation: Activation
    operator: str
    runtime: Runtime
    config: dict[str, Any]
    execution_strategy: ExecutionStrategy
    update_strategy: UpdateStrategy
    timeout_s: int


class OutputTarget(Contract):
    """Where output `index` of this task's job goes: the dataset, the version being written and its location."""

    index: int = Field(ge=0)
    dataset_uuid: UUID
    dataset_version: UUID
    dataset_name: str | None = None
    storage: OutputStorage
    format: FileFormat | None = None
    write_mode: WriteMode | None = None
    unique_key: list[str] = Field(default_factory=list)
    # object-store prefix of the version (s3/local) or `schema.table` (postgres); null for events only
    location: str | None = None

    def file_key(self, scope: EventScope) -> str:
        """The object key of `scope`'s Parquet file in this (Parquet) output's version."""
        if self.storage is not OutputStorage.S3 or self.location is None:
            raise ValueError(f"output {self.index} is not a Parquet output with a location")
        return location_file_key(self.location, scope)


class SlotAssignment(Contract):
    """The worker-pool slot leased for this attempt: plain env, and secret references the wrapper resolves."""

    slot_id: UUID
    pool: str
    env: dict[str, str]
    secret_env: dict[str, str]


class OperatorTask(Contract):
    """What operator code sees of its task: no attempt token, no lease, no secret references."""

    task_id: UUID
    attempt_number: int = Field(ge=1)
    org_id: UUID
    dag_name: str
    dag_version: int = Field(ge=1)
    job: JobSpec
    input_event: Event | None
    outputs: list[OutputTarget]
    query: BatchQuery | None = Field(None, description="the batch query a `duckdb_query` task runs")


class TaskPayload(OperatorTask):
    """The document `task-fetch` returns and Lambda runtimes are invoked with."""

    status: Literal["Running"] = "Running"
    attempt_id: UUID
    attempt_token: str
    lease_expires_at: datetime
    heartbeat_interval_s: float = Field(gt=0)
    slot: SlotAssignment | None = None

    def operator_view(self) -> OperatorTask:
        # the fields were validated into this payload already: copying them needs no dump and second validation
        return OperatorTask.model_construct(**{name: getattr(self, name) for name in OperatorTask.model_fields})
