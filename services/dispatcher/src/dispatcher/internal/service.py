"""The worker contract (SPEC §4): task-fetch, heartbeat, events, task-complete, task-poll.

Every call an attempt makes is gated: the task is locked, and the call must name its newest attempt and
carry that attempt's token. A stale attempt gets 409 saying which attempt is current.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from litestar.exceptions import ClientException, HTTPException, NotFoundException, PermissionDeniedException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT
from pydantic import TypeAdapter

from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.repositories import tasks as repo
from trace_core.auth.tokens import hash_token
from trace_core.batching import Batcher
from trace_core.contracts.events import EmittedEvent, Event, EventScope
from trace_core.contracts.internal import (
    AttemptCall,
    CallError,
    CompletionStatus,
    EmitEventsRequest,
    EmitEventsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskCanceled,
    TaskCompleteBatchRequest,
    TaskCompleteBatchResponse,
    TaskCompleteRequest,
    TaskCompleteResponse,
    TaskCompleteResult,
    TaskFetchBatchRequest,
    TaskFetchBatchResponse,
    TaskFetchResult,
    TaskPollRequest,
    TaskPollResponse,
    TaskReleaseRequest,
    TaskReleaseResponse,
)
from trace_core.contracts.queries import BatchQuery
from trace_core.contracts.tasks import AttemptStatus, JobSpec, OutputTarget, SlotAssignment, TaskPayload, TaskStatus
from trace_core.db.pool import Connection, Pool
from trace_core.db.queries import Pending
from trace_core.logging import get_logger
from trace_core.settings import Settings

log = get_logger(__name__)

Row = dict[str, Any]


def _conflict(detail: str) -> HTTPException:
    return ClientException(detail=detail, status_code=HTTP_409_CONFLICT)


@dataclass(frozen=True)
class _FetchRequest:
    task_id: UUID
    worker_id: str | None
    lease_s: float


class WorkerApi:
    """The internal API's behaviour, independent of HTTP (the Lambda transport starts attempts with it too).

    task-fetch and task-complete go through batchers: concurrent calls share one transaction.
    """

    def __init__(self, pool: Pool, settings: Settings, notifications: Notifications, metrics: Metrics) -> None:
        self.pool = pool
        self.settings = settings
        self.notifications = notifications
        self.metrics = metrics
        self._fetches: Batcher[_FetchRequest, TaskPayload | TaskCanceled] = Batcher("fetch", self._fetch_batch)
        self._completions: Batcher[TaskCompleteRequest, TaskCompleteResponse] = Batcher(
            "complete", self._complete_batch
        )

    async def close(self) -> None:
        await self._fetches.close()
        await self._completions.close()

    async def fetch(
        self, task_id: UUID, worker_id: str | None, lease_s: float | None = None
    ) -> TaskPayload | TaskCanceled:
        """Start an attempt; its first lease is `lease_s` (default TRACE_LEASE_S), then each heartbeat's."""
        return await self._fetches.submit(_FetchRequest(task_id, worker_id, lease_s or self.settings.lease_s))

    async def complete(self, call: TaskCompleteRequest) -> TaskCompleteResponse:
        return await self._completions.submit(call)

    async def fetch_many(self, call: TaskFetchBatchRequest) -> TaskFetchBatchResponse:
        """Each id as its own task-fetch; submitted together, they share the batcher's transactions."""
        answers = await self._fetches.submit_many(
            [_FetchRequest(task_id, call.worker_id, self.settings.lease_s) for task_id in call.task_ids]
        )
        results = []
        for task_id, answer in zip(call.task_ids, answers, strict=True):
            if isinstance(answer, TaskPayload):
                results.append(TaskFetchResult(task_id=task_id, payload=answer))
            elif isinstance(answer, TaskCanceled):
                results.append(TaskFetchResult(task_id=task_id, canceled=True))
            else:
                results.append(TaskFetchResult(task_id=task_id, error=_call_error(answer)))
        return TaskFetchBatchResponse(results=results)

    async def complete_many(self, call: TaskCompleteBatchRequest) -> TaskCompleteBatchResponse:
        answers = await self._completions.submit_many(call.completions)
        results = []
        for completion, answer in zip(call.completions, answers, strict=True):
            if isinstance(answer, TaskCompleteResponse):
                results.append(TaskCompleteResult(task_id=completion.task_id, response=answer))
            else:
                results.append(TaskCompleteResult(task_id=completion.task_id, error=_call_error(answer)))
        return TaskCompleteBatchResponse(results=results)

    async def _fetch_batch(self, requests: list[_FetchRequest]) -> list[TaskPayload | TaskCanceled | Exception]:
        results: list[TaskPayload | TaskCanceled | Exception | None] = [None] * len(requests)
        starting: dict[UUID, tuple[int, int, str]] = {}  # task id -> (request index, attempt number, token)
        # pipelined: BEGIN goes with the lock, the writes and payloads with the COMMIT (two round trips, were six)
        async with self.pool.connection() as conn, conn.pipeline():
            async with conn.transaction():
                started, payloads = await self._start_locked(conn, requests, results, starting)
            attempts, rows = await started.result(), await payloads.result()
        jobs: dict[tuple[UUID, UUID], _JobParts] = {}  # by (job, version)
        for task_id, (index, number, token) in starting.items():
            row = rows[task_id]
            key = (row["job_id"], row["dag_version_id"])
            job = jobs[key] if key in jobs else jobs.setdefault(key, _job_parts(row))
            results[index] = _payload(row, job, attempts[task_id], number, token, self.settings.heartbeat_interval_s)
            self.metrics.attempts.inc()
            if number > 1:
                self.metrics.retries.inc()
        return [result if result is not None else _conflict("unanswered") for result in results]

    async def _start_locked(
        self,
        conn: Connection,
        requests: list[_FetchRequest],
        results: list[TaskPayload | TaskCanceled | Exception | None],
        starting: dict[UUID, tuple[int, int, str]],
    ) -> tuple[Pending[dict[UUID, Row]], Pending[dict[UUID, Row]]]:
        """Lock the requested tasks, answer those that cannot start, cancel dispatched ones asked to stop, and send
        the new attempts and their payloads (read once the transaction commits)."""
        locked = {row["task_id"]: row for row in await repo.lock_tasks(conn, list({r.task_id for r in requests}))}
        canceled: list[UUID] = []
        for index, request in enumerate(requests):
            task = locked.get(request.task_id)
            if request.task_id in starting:
                results[index] = _conflict(f"task {request.task_id} is being started by a concurrent task-fetch")
                continue
            verdict = _fetch_verdict(request.task_id, task)
            if verdict is None:
                assert task is not None
                starting[request.task_id] = (index, task["attempt_count"] + 1, secrets.token_urlsafe(32))
                continue
            results[index] = verdict
            if isinstance(verdict, TaskCanceled) and task is not None and task["status"] == TaskStatus.DISPATCHED:
                canceled.append(request.task_id)
        if canceled:
            await repo.cancel_tasks(conn, canceled)
        if not starting:
            return Pending.of({}), Pending.of({})
        starts = [
            (task_id, number, hash_token(token), requests[index].worker_id, requests[index].lease_s)
            for task_id, (index, number, token) in starting.items()
        ]
        return await repo.start_attempts(conn, starts), await repo.task_payloads(conn, list(starting))

    async def _complete_batch(self, calls: list[TaskCompleteRequest]) -> list[TaskCompleteResponse | Exception]:
        results: list[TaskCompleteResponse | Exception | None] = [None] * len(calls)
        finishing: dict[UUID, tuple[int, AttemptStatus, TaskStatus]] = {}
        # pipelined: BEGIN goes with the gate, the events and the attempts' ends with the COMMIT (two round trips)
        async with self.pool.connection() as conn, conn.pipeline():
            async with conn.transaction():
                stored, finished = await self._finish_gated(conn, calls, results, finishing)
            counts, retry_at = await stored.result(), await finished.result()
        for task_id, (index, _, task_status) in finishing.items():
            accepted, duplicates = counts.get(task_id, (0, 0))
            results[index] = TaskCompleteResponse(
                task_status=task_status,
                accepted_events=accepted,
                duplicate_events=duplicates,
                retry_at=retry_at.get(task_id),
            )
            if retry_at.get(task_id) is not None:
                log.info("dispatcher.task.retry_scheduled", task_id=str(task_id), retry_at=str(retry_at[task_id]))
        if finishing:
            self.notifications.publish("trace_tasks")
            if any(call.events for call in calls if call.task_id in finishing):
                self.notifications.publish("trace_events")
        return [result if result is not None else _conflict("unanswered") for result in results]

    async def _finish_gated(
        self,
        conn: Connection,
        calls: list[TaskCompleteRequest],
        results: list[TaskCompleteResponse | Exception | None],
        finishing: dict[UUID, tuple[int, AttemptStatus, TaskStatus]],
    ) -> tuple[Pending[dict[UUID, tuple[int, int]]], Pending[dict[UUID, datetime | None]]]:
        """Gate the calls (refusals go to `results`), then send the accepted ones' events and the ends of their
        attempts (read once the transaction commits)."""
        gates = {row["task_id"]: row for row in await repo.gate_attempts(conn, list({c.task_id for c in calls}))}
        for index, call in enumerate(calls):
            try:
                if call.task_id in finishing:
                    raise _conflict(f"task {call.task_id} is being completed by a concurrent call")
                gate = _check_gate(gates.get(call.task_id), call)
                status = TaskStatus(gate["task_status"])
                if status in {TaskStatus.CANCELED, TaskStatus.COMPLETED}:
                    raise _conflict(f"task {call.task_id} is already {status.value}; this completion is not accepted")
                check_outputs(call.events, gate["output_count"], "events")
            except HTTPException as refused:
                results[index] = refused
                continue
            finishing[call.task_id] = (index, *_outcome(call, gate))
        if not finishing:
            return Pending.of({}), Pending.of({})
        emitted = [(c.task_id, c.attempt_id, e) for c in calls if c.task_id in finishing for e in c.events]
        stored = await repo.send_insert_events(conn, emitted)
        finished = await repo.finish_attempts(
            conn,
            [
                (task_id, calls[index].attempt_id, attempt.value, task.value, calls[index].error)
                for task_id, (index, attempt, task) in finishing.items()
            ],
            self.settings.retry_base_s,
            self.settings.retry_max_s,
        )
        return stored, finished

    async def heartbeat(self, call: HeartbeatRequest) -> HeartbeatResponse:
        async with self.pool.connection() as conn, conn.transaction():
            gate = await gate_attempt(conn, call)
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
        # pipelined as task-complete: the insert goes with the COMMIT
        async with self.pool.connection() as conn, conn.pipeline():
            async with conn.transaction():
                gate = await gate_attempt(conn, call)
                if TaskStatus(gate["task_status"]).is_terminal:
                    raise _conflict(f"task {call.task_id} is {gate['task_status']}; it cannot emit events any more")
                check_outputs(call.events, gate["output_count"], "events")
                stored = await repo.send_insert_events(conn, [(call.task_id, call.attempt_id, e) for e in call.events])
            counts = await stored.result()
        accepted, duplicates = counts.get(call.task_id, (0, 0))
        if accepted:
            self.notifications.publish("trace_events")
        return EmitEventsResponse(accepted=accepted, duplicates=duplicates)

    async def release(self, call: TaskReleaseRequest) -> TaskReleaseResponse:
        """Ids a stopping worker took and did not start go back to the queue at once (not after
        TRACE_DISPATCH_TIMEOUT_S)."""
        async with self.pool.connection() as conn:
            released = await repo.undispatch(conn, call.task_ids)
        if released:
            log.info("dispatcher.task.released", worker_id=call.worker_id, tasks=released)
            self.notifications.publish("trace_tasks")
        return TaskReleaseResponse(released=released)

    async def poll(self, call: TaskPollRequest) -> TaskPollResponse:
        deadline = datetime.now(UTC) + timedelta(seconds=call.wait_s)
        while True:
            # counted before the take: ids dispatched while it runs wake the wait below at once instead of being
            # missed until the deadline
            seen = self.notifications.seq("trace_dispatched")
            async with self.pool.connection() as conn:
                task_ids = await repo.take_from_transport_queue(conn, call.runtime.value, call.max_tasks)
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if task_ids or remaining <= 0:
                return TaskPollResponse(task_ids=task_ids)
            await self.notifications.wait("trace_dispatched", remaining, after=seen)


def _call_error(error: BaseException) -> CallError:
    """The answer a single call would have given; anything but a client error is re-raised (a 500)."""
    if isinstance(error, HTTPException) and error.status_code < 500:
        return CallError(status_code=error.status_code, detail=error.detail)
    raise error


def _fetch_verdict(task_id: UUID, task: Row | None) -> TaskCanceled | Exception | None:
    """Why a task cannot start a new attempt (None: it can)."""
    if task is None:
        return NotFoundException(f"no task {task_id}")
    status = TaskStatus(task["status"])
    if status is TaskStatus.CANCELED or (task["cancel_requested_at"] is not None and status is not TaskStatus.RUNNING):
        return TaskCanceled(task_id=task_id)
    if status in {TaskStatus.COMPLETED, TaskStatus.FAILED}:
        return _conflict(f"task {task_id} is {status.value}; there is nothing to run")
    if status is TaskStatus.QUEUED:
        return _conflict(f"task {task_id} is Queued, not dispatched; workers fetch only dispatched tasks")
    if task["attempt_count"] >= task["max_attempts"]:
        return _conflict(f"task {task_id} has used all {task['max_attempts']} attempts")
    return None


def _outcome(call: TaskCompleteRequest, gate: Row) -> tuple[AttemptStatus, TaskStatus]:
    if call.status is CompletionStatus.SUCCEEDED:
        return AttemptStatus.SUCCEEDED, TaskStatus.COMPLETED
    if call.status is CompletionStatus.CANCELED or gate["cancel_requested_at"] is not None:
        return AttemptStatus.CANCELED, TaskStatus.CANCELED
    if call.retryable and gate["attempt_count"] < gate["max_attempts"]:
        return AttemptStatus.FAILED, TaskStatus.QUEUED
    return AttemptStatus.FAILED, TaskStatus.FAILED


async def gate_attempt(conn: Connection, call: AttemptCall) -> Row:
    """Lock the call's task and check it names the newest attempt with its token (call in a transaction)."""
    gates = await repo.gate_attempts(conn, [call.task_id])
    return _check_gate(gates[0] if gates else None, call)


def _check_gate(gate: Row | None, call: AttemptCall) -> Row:
    """The call must name the task's newest attempt and carry that attempt's token."""
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


def check_outputs(events: list[EmittedEvent], output_count: int, field: str) -> None:
    """Every event names an output of the job (a 400 naming the first that does not)."""
    for index, event in enumerate(events):
        if event.output >= output_count:
            raise ClientException(
                detail=f"{field}.{index}.output: {event.output} is out of range; the job has {output_count} "
                "output(s), indexed from 0",
                status_code=HTTP_400_BAD_REQUEST,
            )


@dataclass(frozen=True)
class _JobParts:
    """The part of a payload every task of a job and version shares: built once per fetch batch."""

    spec: JobSpec
    outputs: list[OutputTarget]


_OUTPUTS = TypeAdapter(list[OutputTarget])


def _job_parts(row: Row) -> _JobParts:
    spec = JobSpec(
        name=row["job_name"],
        activation=row["activation"],
        operator=row["operator"],
        runtime=row["runtime"],
        config=json.loads(row["config"]),
        execution_strategy=row["execution_strategy"],
        update_strategy=row["update_strategy"],
        timeout_s=row["timeout_s"],
    )
    return _JobParts(spec, _OUTPUTS.validate_json(row["outputs"]))


def _payload(
    row: Row, job: _JobParts, attempt: Row, attempt_number: int, token: str, heartbeat_s: float
) -> TaskPayload:
    event = None
    if row["event_id"] is not None:
        event = Event(
            event_id=row["event_id"],
            dataset_uuid=row["event_dataset_uuid"],
            dataset_version=row["event_dataset_version"],
            kind=row["event_kind"],
            scope=EventScope.from_columns(
                row["scope_cursor"], row["partition_key"], row["range_start"], row["range_end"]
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
        job=job.spec,
        input_event=event,
        outputs=job.outputs,
        query=BatchQuery.model_validate(row["query"]) if row["query"] is not None else None,
        slot=slot,
    )
