"""Requests and responses of the dispatcher's internal API (`/internal/*`, SPEC §4)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import Field, model_validator

from trace_core.contracts._base import Contract
from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.queries import ResultColumn
from trace_core.contracts.tasks import TaskPayload, TaskStatus
from trace_core.dag.config import Runtime
from trace_core.idempotency import canonical_json

MAX_EVENTS_PER_CALL = 10_000
MAX_ROWS_PER_CALL = 50_000
MAX_OPERATOR_STATE_BYTES = 1_000_000


class AttemptCall(Contract):
    """Fields every call made on behalf of a running attempt carries; gated against the newest attempt."""

    task_id: UUID
    attempt_id: UUID
    attempt_token: Annotated[str, Field(min_length=16, max_length=256)]


class TaskCanceled(Contract):
    """`task-fetch` answer for a task that was canceled before (or while) it was fetched."""

    status: Literal["Canceled"] = "Canceled"
    task_id: UUID


TaskFetchResponse = Annotated[TaskPayload | TaskCanceled, Field(discriminator="status")]


class HeartbeatRequest(AttemptCall):
    pass


class HeartbeatResponse(Contract):
    canceled: bool
    lease_expires_at: datetime


class EmitEventsRequest(AttemptCall):
    events: list[EmittedEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_CALL)


class EmitEventsResponse(Contract):
    accepted: int = Field(ge=0, description="events stored by this call")
    duplicates: int = Field(ge=0, description="events already stored by an earlier attempt or call")


class CompletionStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class TaskCompleteRequest(AttemptCall):
    status: CompletionStatus
    events: list[EmittedEvent] = Field(default_factory=list, max_length=MAX_EVENTS_PER_CALL)
    error: Annotated[str, Field(max_length=16_384)] | None = None
    retryable: bool = Field(True, description="false: a failure that another attempt cannot fix")


class TaskCompleteResponse(Contract):
    task_status: TaskStatus
    accepted_events: int = Field(ge=0)
    duplicate_events: int = Field(ge=0)
    retry_at: datetime | None = None


class TaskPollRequest(Contract):
    runtime: Runtime
    worker_id: Annotated[str, Field(min_length=1, max_length=200)]
    max_tasks: int = Field(1, ge=1, le=1_000)
    wait_s: float = Field(0, ge=0, le=30)


class TaskPollResponse(Contract):
    task_ids: list[UUID]


class RowsRequest(AttemptCall):
    """Rows for a `write_mode: direct` Postgres output, written for `scope` in one transaction."""

    output: int = Field(0, ge=0)
    scope: EventScope
    replace_scope: bool = Field(
        False, description="delete the rows written earlier for this scope first (update_strategy replace)"
    )
    rows: list[dict[str, Any]] = Field(max_length=MAX_ROWS_PER_CALL)

    @model_validator(mode="after")
    def _rows_or_clear(self) -> Self:
        if not self.rows and not self.replace_scope:
            raise ValueError("rows: give at least one row, or replace_scope: true with no rows to clear the scope")
        return self


class RowsResponse(Contract):
    written: int = Field(ge=0, description="rows inserted or updated")
    duplicates: int = Field(ge=0, description="rows skipped: their unique_key is already in the table")
    replaced: int = Field(0, ge=0, description="rows of the scope deleted first (replace_scope)")


class TaskInputRequest(AttemptCall):
    """Where the data of the task's input event is: its dataset version, limited to the event's scope."""


class QueryInputRequest(AttemptCall):
    """The rows of a Postgres dataset the task's query pinned, as CSV (the worker holds no database credential)."""

    dataset_uuid: UUID


class QueryResultRequest(AttemptCall):
    """The attempt stored its result at `location` (an object key); recorded before the task completes."""

    location: Annotated[str, Field(min_length=1, max_length=1_000)]
    row_count: int = Field(ge=0)
    truncated: bool
    columns: list[ResultColumn]


class QueryResultResponse(Contract):
    query_id: UUID


class Column(Contract):
    name: str
    type: str = Field(description="Postgres type of the column, as `format_type` prints it")


class TaskInputResponse(Contract):
    """A Parquet input: the object key of the scope's file. A Postgres input: the scope's rows."""

    storage: Literal["postgres", "s3"]
    parquet_key: str | None = None
    columns: list[Column] = Field(default_factory=list)
    rows: list[dict[str, Any]] = Field(default_factory=list)


class OperatorStateReadRequest(AttemptCall):
    """The durable state of the task's job (`operator_state`, keyed by org and job)."""


class OperatorState(Contract):
    """A job's operator state and its revision; revision 0 and no state: nothing was saved yet."""

    state: dict[str, Any] | None = None
    revision: int = Field(0, ge=0)


class OperatorStateWriteRequest(AttemptCall):
    """Compare-and-swap of the job's operator state, with the events it accounts for, in one transaction:
    either both are stored or neither. Refused with 412 when the stored revision is not `expected_revision`."""

    expected_revision: int = Field(ge=0, description="the revision the new state was computed from (0: none yet)")
    state: dict[str, Any]
    events: list[EmittedEvent] = Field(default_factory=list, max_length=MAX_EVENTS_PER_CALL)

    @model_validator(mode="after")
    def _bounded_state(self) -> Self:
        size = len(canonical_json(self.state))
        if size > MAX_OPERATOR_STATE_BYTES:
            raise ValueError(f"state is {size} bytes; operator state holds at most {MAX_OPERATOR_STATE_BYTES}")
        return self


class OperatorStateWriteResponse(Contract):
    revision: int = Field(ge=1, description="the revision now stored")
    accepted_events: int = Field(ge=0)
    duplicate_events: int = Field(ge=0)


class ErrorResponse(Contract):
    """Body of every 4xx answer of Trace's APIs."""

    status_code: int
    detail: str
    extra: dict[str, Any] | list[Any] | None = None


MAX_BATCH = 256


class CallError(Contract):
    """Why one item of a batch call was refused: the status and detail the single call would have answered."""

    status_code: int
    detail: str


class TaskFetchBatchRequest(Contract):
    """Many task-fetches in one call (a worker that took many ids from the transport)."""

    task_ids: list[UUID] = Field(min_length=1, max_length=MAX_BATCH)
    worker_id: Annotated[str, Field(max_length=200)] | None = None


class TaskFetchResult(Contract):
    task_id: UUID
    payload: TaskPayload | None = None
    canceled: bool = False
    error: CallError | None = None


class TaskFetchBatchResponse(Contract):
    results: list[TaskFetchResult]


class TaskReleaseRequest(Contract):
    """Task ids a worker took from the transport and will not start (it is stopping): back to the queue."""

    task_ids: list[UUID] = Field(min_length=1, max_length=MAX_BATCH)
    worker_id: Annotated[str, Field(max_length=200)] | None = None


class TaskReleaseResponse(Contract):
    released: int  # how many were still dispatched, not started; the others were left as they were


class TaskCompleteBatchRequest(Contract):
    """Many task-completes in one call; each is accepted or refused on its own."""

    completions: list[TaskCompleteRequest] = Field(min_length=1, max_length=MAX_BATCH)


class TaskCompleteResult(Contract):
    task_id: UUID
    response: TaskCompleteResponse | None = None
    error: CallError | None = None


class TaskCompleteBatchResponse(Contract):
    results: list[TaskCompleteResult]
