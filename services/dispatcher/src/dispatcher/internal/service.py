"""The worker contract (SPEC §4): task-fetch, heartbeat, events, task-complete, task-poll.

Every call an attempt makes is gated: the task is locked, and the call must name its newest attempt and
carry that attempt's token. A stale attempt gets 409 saying which attempt is current.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from litestar.exceptions import ClientException, HTTPException, NotFoundException, PermissionDeniedException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT

from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.repositories import tasks as repo
from trace_core.auth.tokens import hash_token
from trace_core.contracts.events import EmittedEvent, Event, EventScope
from trace_core.contracts.internal import (
    AttemptCall,
    CompletionStatus,
    EmitEventsRequest,
    EmitEventsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskCanceled,
    TaskCompleteRequest,
    TaskCompleteResponse,
    TaskPollRequest,
    TaskPollResponse,
)
from trace_core.contracts.tasks import AttemptStatus, JobSpec, OutputTarget, SlotAssignment, TaskPayload, TaskStatus
from trace_core.db.pool import Connection, Pool
from trace_core.logging import get_logger
from trace_core.settings import Settings

log = get_logger(__name__)

Row = dict[str, Any]


def _conflict(detail: str) -> HTTPException:
    return ClientException(detail=detail, status_code=HTTP_409_CONFLICT)


class WorkerApi:
    """The internal API's behaviour, independent of HTTP (the Lambda transport starts attempts with it too)."""

    def __init__(self, pool: Pool, settings: Settings, notifications: Notifications, metrics: Metrics) -> None:
        self.pool = pool
        self.settings = settings
        self.notifications = notifications
        self.metrics = metrics

    async def fetch(self, task_id: UUID, worker_id: str | None) -> TaskPayload | TaskCanceled:
        async with self.pool.connection() as conn, conn.transaction():
            task = await repo.lock_task(conn, task_id)
            if task is None:
                raise NotFoundException(f"no task {task_id}")
            status = TaskStatus(task["status"])
            if status is TaskStatus.CANCELED or (
                task["cancel_requested_at"] is not None and status is not TaskStatus.RUNNING
            ):
                if status is TaskStatus.DISPATCHED:
                    await repo.cancel_dispatched(conn, task_id)
                return TaskCanceled(task_id=task_id)
            if status in {TaskStatus.COMPLETED, TaskStatus.FAILED}:
                raise _conflict(f"task {task_id} is {status.value}; there is nothing to run")
            if status is TaskStatus.QUEUED:
                raise _conflict(f"task {task_id} is Queued, not dispatched; workers fetch only dispatched tasks")
            if task["attempt_count"] >= task["max_attempts"]:
                raise _conflict(f"task {task_id} has used all {task['max_attempts']} attempts")
            token = secrets.token_urlsafe(32)
            attempt = await repo.start_attempt(
                conn,
                task_id=task_id,
                attempt_number=task["attempt_count"] + 1,
                token_hash=hash_token(token),
                lease_s=self.settings.lease_s,
                worker_id=worker_id,
            )
            row = await repo.task_payload(conn, task_id)
        assert row is not None
        self.metrics.attempts.inc()
        if task["attempt_count"] > 0:
            self.metrics.retries.inc()
        return _payload(row, attempt, task["attempt_count"] + 1, token, self.settings.heartbeat_interval_s)

    async def heartbeat(self, call: HeartbeatRequest) -> HeartbeatResponse:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await _gate(conn, call)
            if gate["task_status"] == TaskStatus.CANCELED or gate["cancel_requested_at"] is not None:
                return HeartbeatResponse(canceled=True, lease_expires_at=gate["lease_expires_at"])
            if gate["attempt_status"] != AttemptStatus.RUNNING:
                raise _conflict(
                    f"attempt #{gate['attempt_number']} of task {call.task_id} is {gate['attempt_status']}; "
                    "its lease cannot be extended (report its outcome with task-complete)"
                )
            expires = datetime.now(UTC) + timedelta(seconds=self.settings.lease_s)
            if gate["activation"] == "reactive":
                expires = min(expires, gate["started_at"] + timedelta(seconds=gate["timeout_s"]))
            lease = await repo.extend_lease(conn, gate["attempt_id"], expires)
        return HeartbeatResponse(canceled=False, lease_expires_at=lease)

    async def emit(self, call: EmitEventsRequest) -> EmitEventsResponse:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await _gate(conn, call)
            if TaskStatus(gate["task_status"]).is_terminal:
                raise _conflict(f"task {call.task_id} is {gate['task_status']}; it cannot emit events any more")
            _check_outputs(call.events, gate["output_count"], "events")
            accepted, duplicates = await repo.insert_events(
                conn, gate["org_id"], call.task_id, call.attempt_id, call.events
            )
        if accepted:
            self.notifications.publish("trace_events")
        return EmitEventsResponse(accepted=accepted, duplicates=duplicates)

    async def complete(self, call: TaskCompleteRequest) -> TaskCompleteResponse:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await _gate(conn, call)
            status = TaskStatus(gate["task_status"])
            if status in {TaskStatus.CANCELED, TaskStatus.COMPLETED}:
                raise _conflict(f"task {call.task_id} is already {status.value}; this completion is not accepted")
            _check_outputs(call.events, gate["output_count"], "events")
            accepted, duplicates = await repo.insert_events(
                conn, gate["org_id"], call.task_id, call.attempt_id, call.events
            )
            retry_at: datetime | None = None
            if call.status is CompletionStatus.SUCCEEDED:
                attempt_status, task_status = AttemptStatus.SUCCEEDED, TaskStatus.COMPLETED
            elif call.status is CompletionStatus.CANCELED or gate["cancel_requested_at"] is not None:
                attempt_status, task_status = AttemptStatus.CANCELED, TaskStatus.CANCELED
            elif call.retryable and gate["attempt_count"] < gate["max_attempts"]:
                attempt_status, task_status = AttemptStatus.FAILED, TaskStatus.QUEUED
                retry_at = await repo.retry_at(
                    conn, gate["attempt_count"], self.settings.retry_base_s, self.settings.retry_max_s
                )
            else:
                attempt_status, task_status = AttemptStatus.FAILED, TaskStatus.FAILED
            await repo.finish_attempt(
                conn,
                task_id=call.task_id,
                attempt_id=call.attempt_id,
                attempt_status=attempt_status.value,
                task_status=task_status.value,
                error=call.error,
                retry_at=retry_at,
            )
        if accepted:
            self.notifications.publish("trace_events")
        self.notifications.publish("trace_tasks")
        if retry_at is not None:
            log.info(
                "dispatcher.task.retry_scheduled",
                task_id=str(call.task_id),
                attempt=gate["attempt_count"],
                retry_at=retry_at.isoformat(),
            )
        return TaskCompleteResponse(
            task_status=task_status, accepted_events=accepted, duplicate_events=duplicates, retry_at=retry_at
        )

    async def poll(self, call: TaskPollRequest) -> TaskPollResponse:
        deadline = datetime.now(UTC) + timedelta(seconds=call.wait_s)
        while True:
            async with self.pool.connection() as conn:
                task_ids = await repo.take_from_transport_queue(conn, call.runtime.value, call.max_tasks)
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if task_ids or remaining <= 0:
                return TaskPollResponse(task_ids=task_ids)
            await self.notifications.wait("trace_dispatched", remaining)


async def _gate(conn: Connection, call: AttemptCall) -> Row:
    gate = await repo.gate_attempt(conn, call.task_id)
    if gate is None:
        raise NotFoundException(f"no task {call.task_id}")
    if gate["attempt_id"] is None:
        raise _conflict(f"task {call.task_id} has no attempt; call task-fetch first")
    if gate["attempt_id"] != call.attempt_id:
        raise _conflict(
            f"attempt {call.attempt_id} is not the current attempt of task {call.task_id}; "
            f"the current attempt is #{gate['attempt_number']} ({gate['attempt_id']})"
        )
    if not hmac.compare_digest(bytes(gate["attempt_token_hash"]), hash_token(call.attempt_token)):
        raise PermissionDeniedException(f"the attempt token does not match attempt {call.attempt_id}")
    return gate


def _check_outputs(events: list[EmittedEvent], output_count: int, field: str) -> None:
    for index, event in enumerate(events):
        if event.output >= output_count:
            raise ClientException(
                detail=f"{field}.{index}.output: {event.output} is out of range; the job has {output_count} "
                "output(s), indexed from 0",
                status_code=HTTP_400_BAD_REQUEST,
            )


def _payload(row: Row, attempt: Row, attempt_number: int, token: str, heartbeat_s: float) -> TaskPayload:
    event = None
    if row["event_id"] is not None:
        has_range = row["range_start"] is not None
        event = Event(
            event_id=row["event_id"],
            dataset_uuid=row["event_dataset_uuid"],
            dataset_version=row["event_dataset_version"],
            kind=row["event_kind"],
            scope=EventScope(
                cursor=row["scope_cursor"],
                partition_key=row["partition_key"],
                range={"start": row["range_start"], "end": row["range_end"]} if has_range else None,
            ),
            payload=row["event_payload"],
            producer_task_id=row["event_producer_task_id"],
            created_at=row["event_created_at"],
        )
    slot = None
    if row["slot_id"] is not None:
        slot = SlotAssignment(
            slot_id=row["slot_id"], pool=row["pool_name"], env=row["slot_env"], secret_env=row["slot_secret_env"]
        )
    return TaskPayload(
        task_id=row["task_id"],
        attempt_id=attempt["attempt_id"],
        attempt_number=attempt_number,
        attempt_token=token,
        lease_expires_at=attempt["lease_expires_at"],
        heartbeat_interval_s=heartbeat_s,
        org_id=row["org_id"],
        dag_name=row["dag_name"],
        dag_version=row["dag_version"],
        job=JobSpec(
            name=row["job_name"],
            activation=row["activation"],
            operator=row["operator"],
            runtime=row["runtime"],
            config=row["config"],
            execution_strategy=row["execution_strategy"],
            update_strategy=row["update_strategy"],
            timeout_s=row["timeout_s"],
        ),
        input_event=event,
        outputs=[OutputTarget.model_validate(output) for output in row["outputs"]],
        slot=slot,
    )
