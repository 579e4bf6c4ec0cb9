"""The worker wrapper: the security boundary between the platform and operator code (SPEC §4).

It receives task ids (embedded poll or SQS), starts attempts with task-fetch, runs each in an operator child
that holds neither the service credential nor the attempt token, forwards the events the child emits,
heartbeats, stops the child when the task is canceled or its attempt superseded, completes, and drains on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import UUID

from pydantic import ValidationError

from trace_core.batching import Batcher
from trace_core.contracts.events import EmittedEvent, EventKind
from trace_core.contracts.internal import (
    MAX_BATCH,
    CallError,
    CompletionStatus,
    EmitEventsRequest,
    HeartbeatRequest,
    OperatorStateReadRequest,
    OperatorStateWriteRequest,
    TaskCompleteRequest,
    TaskCompleteResponse,
    TaskPollRequest,
)
from trace_core.contracts.operator import (
    Done,
    Emit,
    InputReady,
    LoadState,
    NeedInput,
    NeedQueryInputs,
    QueryInputsReady,
    QueryResultWritten,
    RunTask,
    SaveState,
    StateLoaded,
    StateSaved,
    WriteOutput,
)
from trace_core.contracts.tasks import OutputStorage, TaskPayload
from trace_core.dag.config import Runtime
from trace_core.logging import get_logger
from trace_core.objectstore import open_object_store
from trace_core.settings import Settings
from worker.cascade import cascaded, rewrites_invalidation
from worker.children import Child, ChildDiedError, ChildPool, Lane
from worker.client import DispatcherClient, DispatcherError
from worker.data import DataPlane
from worker.operators import OperatorError
from worker.secrets import resolve_secret_env

log = get_logger(__name__)

EVENT_FLUSH_S = 0.2
EVENT_FLUSH_COUNT = 500
POLL_WAIT_S = 5.0
# Attempts started and not finished (fetching, waiting for a runner, running), at most, as a multiple of the
# concurrency: an attempt waiting for a runner uses up its lease.
STARTED_AHEAD = 2
# Task ids the embedded poll takes, at most, likewise: ids not started yet cost nothing (they stay Dispatched, and
# the dispatcher takes them back after TRACE_DISPATCH_TIMEOUT_S), and with ids at hand a runner that frees up
# waits for one task-fetch round trip, not for a poll and then a fetch (lifecycle benchmark: ~870 -> ~1,000+
# tasks/s). Other sources take ids only as far ahead as attempts start (an SQS message waits for its fetch to be
# deleted, and must not outlive its visibility timeout).
POLLED_AHEAD = 4
# Built-in operators whose tasks of one org's DAG run at once in one operator child, each on a lane: cryo in one
# process runs its extractions on one tokio runtime and one polars pool, as cryo alone does; in a child each it cost
# ~10 % more CPU of cryo and devchain and ~25 % more wall time (docs/ingest.md). Only operators that never ask the
# wrapper for anything (input, state, query datasets) may share, and no user code: a UDF shares no process.
SHARED_OPERATORS = frozenset({"cryo_ingest"})


class _AttemptOverError(Exception):
    """The attempt must stop: canceled (report it) or superseded/unknown (report nothing)."""

    def __init__(self, reason: str, *, canceled: bool) -> None:
        super().__init__(reason)
        self.canceled = canceled


class Wrapper:
    def __init__(self, settings: Settings, client: DispatcherClient | None = None) -> None:
        self.settings = settings
        self.runtime = Runtime(settings.worker_runtime)
        self.worker_id = settings.worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.client = client or DispatcherClient(
            settings.dispatcher_url,
            settings.service_token.get_secret_value(),
            connections=settings.worker_concurrency + 2,
        )
        self.children = ChildPool(settings.worker_concurrency, settings.udf_path)
        self.data = DataPlane(open_object_store(settings), self.client)
        self.running: set[asyncio.Task[None]] = set()
        self.draining = asyncio.Event()
        self._room = asyncio.Event()
        self._unstarted: list[UUID] = []  # ids taken, attempts not started yet
        self._ready: asyncio.Queue[TaskPayload] = asyncio.Queue()  # attempts started, not yet running
        self._fetching = 0
        self._starting: set[asyncio.Task[None]] = set()  # task-fetch-batch calls out
        self._completing: set[asyncio.Task[None]] = set()  # outcomes reported, not yet answered
        # completions of this worker's attempts go to the dispatcher in batch calls
        self._completions: Batcher[TaskCompleteRequest, TaskCompleteResponse] = Batcher(
            "worker.complete", self._send_completions, executors=2
        )
        # called once task-fetch answered (the SQS source deletes the message then)
        self.on_fetched: Callable[[UUID], Awaitable[None]] | None = None

    async def run(self, task_ids: Callable[[int], AsyncIterator[list[UUID]]] | None = None) -> None:
        """Take task ids until drained; `task_ids(room)` yields batches (default: the embedded poll).

        Ids are taken ahead (POLLED_AHEAD), so runners never wait for a poll round trip; they are started in
        task-fetch-batch calls, made in the background while the next poll is out, as far as STARTED_AHEAD allows.
        """
        await self.children.start()
        log.info(
            "worker.started",
            worker_id=self.worker_id,
            runtime=self.runtime.value,
            concurrency=self.settings.worker_concurrency,
        )
        source = task_ids or self._poll
        ahead = (STARTED_AHEAD if task_ids else POLLED_AHEAD) * self.settings.worker_concurrency
        runners = [asyncio.create_task(self._runner()) for _ in range(self.settings.worker_concurrency)]
        try:
            async for batch in source(ahead):
                if batch:
                    self._unstarted += batch
                    self._start_more()
                if self.draining.is_set():
                    break
        finally:
            await self._drain(runners)

    def _start_more(self) -> None:
        """Start attempts for ids at hand in the background, as far as STARTED_AHEAD allows: a poll that waited
        for the previous batch's task-fetch left the runners idle for two round trips per batch. A fetch takes at
        least half the concurrency at once, unless none is out (small fetches cost the dispatcher a call each)."""
        room = STARTED_AHEAD * self.settings.worker_concurrency - self._started()
        if not self._unstarted or room <= 0 or (self._fetching and room < self.settings.worker_concurrency // 2):
            return
        task_ids, self._unstarted = self._unstarted[:room], self._unstarted[room:]
        self._fetching += len(task_ids)
        starting = asyncio.create_task(self._start(task_ids))
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)

    def _started(self) -> int:
        """Attempts being started, waiting for a runner or running."""
        return len(self.running) + self._ready.qsize() + self._fetching

    async def _start(self, task_ids: list[UUID]) -> None:
        """Start attempts for `task_ids` in one call and queue them for the runners."""
        try:
            results = await self.client.fetch_many(task_ids, self.worker_id)
        except (DispatcherError, OSError) as error:
            # the ids go back to the queue by the dispatcher's dispatch timeout
            log.warning("worker.fetch_failed", tasks=len(task_ids), error=str(error))
            return
        finally:
            self._fetching -= len(task_ids)
            self._room.set()
            if not self.draining.is_set():
                self._start_more()
        for result in results:
            if self.on_fetched is not None:
                await self.on_fetched(result.task_id)
            if result.payload is not None:
                self._ready.put_nowait(result.payload)
            elif result.canceled:
                log.info("worker.task.canceled_before_start", task_id=str(result.task_id))
            elif result.error is not None:
                log.info("worker.task.not_started", task_id=str(result.task_id), reason=result.error.detail)

    async def _runner(self) -> None:
        while True:
            payload = await self._ready.get()
            task = asyncio.current_task()
            assert task is not None
            self.running.add(task)
            try:
                await self.run_attempt(payload)
            except Exception as error:  # one task's failure must not stop the worker
                log.exception("worker.task_crashed", task_id=str(payload.task_id), error=str(error))
            finally:
                self.running.discard(task)
                self._room.set()
                if not self.draining.is_set():
                    self._start_more()

    def room(self, ahead: int) -> int:
        """How many more task ids to take now."""
        return ahead - self._started() - len(self._unstarted)

    async def _poll(self, ahead: int) -> AsyncIterator[list[UUID]]:
        while not self.draining.is_set():
            if self.room(ahead) <= self.settings.worker_concurrency // 2:
                self._room.clear()
                await self._room.wait()
                continue
            poll = asyncio.create_task(
                self.client.poll(
                    TaskPollRequest(
                        runtime=self.runtime, worker_id=self.worker_id, max_tasks=self.room(ahead), wait_s=POLL_WAIT_S
                    )
                )
            )
            drained = asyncio.create_task(self.draining.wait())
            await asyncio.wait({poll, drained}, return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            if not poll.done():
                poll.cancel()
                return
            try:
                yield poll.result().task_ids
            except (DispatcherError, OSError) as error:
                log.warning("worker.poll_failed", error=str(error))
                await asyncio.sleep(1)

    def drain(self) -> None:
        """Stop taking tasks; running ones finish (SIGTERM)."""
        log.info("worker.draining", running=len(self.running))
        self.draining.set()

    async def close(self) -> None:
        """Deliver the outcomes already reported, then release the completion batcher, the operator children and
        the HTTP client."""
        await _settle(self._completing, self.settings.worker_drain_s)
        await self._completions.close()
        await self.children.close()
        await self.data.store.close()
        await self.client.close()

    async def _drain(self, runners: list[asyncio.Task[None]]) -> None:
        """Finish what runs (up to TRACE_WORKER_DRAIN_S); ids not started go back to the dispatcher's queue (if
        that call fails, the dispatcher takes them back after TRACE_DISPATCH_TIMEOUT_S)."""
        await self._release_unstarted()
        await _settle(self._starting, self.settings.worker_drain_s)  # what they start runs like the rest
        await _settle(self.running, self.settings.worker_drain_s)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if not self._ready.empty():
            log.info("worker.drain.left_unstarted", tasks=self._ready.qsize())
        await self.close()
        log.info("worker.stopped", worker_id=self.worker_id)

    async def _release_unstarted(self) -> None:
        task_ids, self._unstarted = self._unstarted, []
        for start in range(0, len(task_ids), MAX_BATCH):
            try:
                released = await self.client.release(task_ids[start : start + MAX_BATCH], self.worker_id)
            except (DispatcherError, OSError) as error:
                log.warning("worker.release_failed", tasks=len(task_ids), error=str(error))
                return
            log.info("worker.tasks_released", tasks=released)

    async def run_attempt(self, payload: TaskPayload) -> None:
        try:
            env = dict(payload.slot.env) if payload.slot else {}
            if payload.slot and payload.slot.secret_env:
                env |= resolve_secret_env(
                    payload.slot.secret_env,
                    home=Path(self.settings.home),
                    env=self.settings.env,
                    org_id=payload.org_id,
                    operator=payload.job.operator,
                )
        except OperatorError as error:
            self._complete_later(payload, CompletionStatus.FAILED, [], str(error), error.retryable)
            return
        child: Child | Lane
        if payload.job.operator in SHARED_OPERATORS:
            shared_by = (payload.job.operator, payload.org_id, payload.dag_name)
            child = await self.children.acquire_lane(shared_by)
        else:
            child = await self.children.acquire()
        heartbeat = asyncio.create_task(self._heartbeat(payload, child))
        try:
            status, events, failure, retryable = await self._supervise(payload, child, env, heartbeat)
        except _AttemptOverError as over:
            await child.kill()
            if over.canceled:
                self._complete_later(payload, CompletionStatus.CANCELED, [], over.args[0], False)
            else:
                log.info("worker.attempt.abandoned", task_id=str(payload.task_id), reason=over.args[0])
            return
        except asyncio.CancelledError:
            await child.kill()
            await self._complete(payload, CompletionStatus.FAILED, [], "the worker shut down mid-task", True)
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, _AttemptOverError):
                await heartbeat
            if payload.query is not None:
                await self.data.discard_staged(child.workdir)
            if isinstance(child, Lane):
                await self.children.release_lane(shared_by, child)
            else:
                await self.children.release(child)
        self._complete_later(payload, status, events, failure, retryable)

    def _complete_later(
        self,
        payload: TaskPayload,
        status: CompletionStatus,
        events: list[EmittedEvent],
        error: str | None,
        retryable: bool,
    ) -> None:
        """Report an outcome without holding the runner: its next task starts while the completion rides in a
        batch call (a runner waiting for the answer left the children idle for a dispatcher round trip)."""
        completing = asyncio.create_task(self._complete(payload, status, events, error, retryable))
        self._completing.add(completing)
        completing.add_done_callback(self._completing.discard)

    async def _supervise(
        self, payload: TaskPayload, child: Child | Lane, env: dict[str, str], heartbeat: asyncio.Task[None]
    ) -> tuple[CompletionStatus, list[EmittedEvent], str | None, bool]:
        """Run the attempt in `child`; events are forwarded in batches, the last ones go with completion."""
        await child.send(RunTask(task=payload.operator_view(), env=env))
        deadline = None if payload.job.activation == "source" else time.monotonic() + payload.job.timeout_s
        buffer: list[EmittedEvent] = []
        flush_at = 0.0
        written: set[tuple[int, str]] = set()  # (output, storage key) this attempt wrote
        receive = asyncio.create_task(child.receive())
        while True:
            now = time.monotonic()
            waits = [t for t in (deadline, flush_at if buffer else None) if t is not None]
            timeout = max(0.0, min(waits) - now) if waits else None
            done, _ = await asyncio.wait({receive, heartbeat}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if heartbeat in done:
                receive.cancel()
                heartbeat.result()  # raises _AttemptOverError
            if receive not in done:
                # uvloop's timers have millisecond resolution and may wake a little early: only a deadline that
                # has passed is a timeout (a flush timer waking early was taken for one and killed the task)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    receive.cancel()
                    await child.kill()
                    return CompletionStatus.FAILED, buffer, f"timed out after {payload.job.timeout_s}s", True
                if buffer and now >= flush_at:
                    await self._flush(payload, buffer)
                    buffer = []
                continue
            try:
                message = receive.result()
            except ChildDiedError as died:
                return CompletionStatus.FAILED, buffer, str(died), True
            if isinstance(message, Done):
                if message.status != "succeeded":
                    return CompletionStatus.FAILED, buffer, message.error, message.retryable
                try:
                    buffer += await self._cascade_unwritten(payload, written)
                except (DispatcherError, OSError) as error:
                    if isinstance(error, DispatcherError) and error.status_code in {404, 409}:
                        raise _AttemptOverError(error.detail, canceled=False) from None
                    return CompletionStatus.FAILED, buffer, f"clearing the invalidated scope failed: {error}", True
                return CompletionStatus.SUCCEEDED, buffer, None, True
            event = cascaded(payload, message.event) if isinstance(message, Emit) else None
            if isinstance(message, SaveState) and buffer:
                await self._flush(payload, buffer)  # events emitted before the save keep their order
                buffer = []
            if isinstance(
                message, WriteOutput | NeedInput | NeedQueryInputs | QueryResultWritten | LoadState | SaveState
            ):
                try:
                    event = await self._serve(payload, child, message, written)
                except (OperatorError, DispatcherError, OSError, ValueError) as error:
                    if isinstance(error, DispatcherError) and error.status_code in {404, 409}:
                        raise _AttemptOverError(error.detail, canceled=False) from None
                    await child.kill()
                    if isinstance(error, OperatorError):
                        retryable = error.retryable
                    else:
                        retryable = not isinstance(error, DispatcherError) or error.status_code >= 500
                    failure = f"serving the operator's {message.kind} request failed: {error}"
                    return CompletionStatus.FAILED, buffer, failure, retryable
            receive = asyncio.create_task(child.receive())
            if event is not None:
                if not buffer:
                    flush_at = time.monotonic() + EVENT_FLUSH_S
                buffer.append(event)
                if len(buffer) >= EVENT_FLUSH_COUNT:
                    await self._flush(payload, buffer)
                    buffer = []

    async def _serve(
        self,
        payload: TaskPayload,
        child: Child | Lane,
        message: WriteOutput | NeedInput | NeedQueryInputs | QueryResultWritten | LoadState | SaveState,
        written: set[tuple[int, str]],
    ) -> EmittedEvent | None:
        """Store what the child wrote (its data event comes back) or its batch query's result, hand it its input
        or its query's datasets, or read or save its operator state. A refusal the child can act on goes back to
        it; anything else fails the attempt."""
        if isinstance(message, WriteOutput):
            # the wrapper stores and then deletes the file: only the child's own files may be named
            if not _inside(message.path, child.workdir):
                raise OperatorError(
                    f"write: {message.path} is not under the operator's working directory", retryable=False
                )
            return await self.data.store_output(payload, message, written)
        if isinstance(message, QueryResultWritten):
            await self.data.store_query_result(payload, message)
            return None
        if isinstance(message, NeedQueryInputs):
            try:
                staged = await self.data.stage_query_inputs(payload, child.workdir)
            except (OperatorError, DispatcherError, OSError) as error:
                await child.send(QueryInputsReady(error=str(error)))
            else:
                await child.send(staged)
            return None
        if isinstance(message, NeedInput):
            try:
                path = await self.data.fetch_input(payload, child.workdir)
            except (OperatorError, DispatcherError) as error:
                await child.send(InputReady(error=str(error)))
            else:
                await child.send(InputReady(path=str(path)))
            return None
        if isinstance(message, LoadState):
            stored = await self.client.read_operator_state(
                OperatorStateReadRequest(
                    task_id=payload.task_id, attempt_id=payload.attempt_id, attempt_token=payload.attempt_token
                )
            )
            await child.send(StateLoaded(state=stored.state, revision=stored.revision))
            return None
        await child.send(await self._save_state(payload, message))
        return None

    async def _save_state(self, payload: TaskPayload, message: SaveState) -> StateSaved:
        try:
            call = OperatorStateWriteRequest(
                task_id=payload.task_id,
                attempt_id=payload.attempt_id,
                attempt_token=payload.attempt_token,
                expected_revision=message.expected_revision,
                state=message.state,
                events=[cascaded(payload, event) for event in message.events],
            )
        except ValidationError as error:
            return StateSaved(error=f"the state or its events are not valid: {error}", retryable=False)
        try:
            saved = await self.client.write_operator_state(call)
        except DispatcherError as error:
            if error.status_code == 412:
                current = error.extra.get("revision", 0) if isinstance(error.extra, dict) else 0
                return StateSaved(conflict=True, revision=current)
            if error.status_code in {404, 409} or error.status_code >= 500:
                raise
            return StateSaved(error=error.detail, retryable=False)
        return StateSaved(revision=saved.revision)

    async def _cascade_unwritten(self, payload: TaskPayload, written: set[tuple[int, str]]) -> list[EmittedEvent]:
        """A replace job that rewrote an invalidated scope: each stored output it did not write has that scope
        cleared and gets its invalidation (see worker.cascade)."""
        if payload.input_event is None or not rewrites_invalidation(payload):
            return []
        scope = payload.input_event.scope
        outputs = {output for output, _ in written}
        events = []
        for target in payload.outputs:
            if target.storage is OutputStorage.NONE or target.index in outputs:
                continue
            await self.data.clear_scope(payload, target.index, scope)
            events.append(EmittedEvent(output=target.index, kind=EventKind.INVALIDATION, scope=scope))
        return events

    async def _flush(self, payload: TaskPayload, events: list[EmittedEvent]) -> None:
        try:
            await self.client.emit(
                EmitEventsRequest(
                    task_id=payload.task_id,
                    attempt_id=payload.attempt_id,
                    attempt_token=payload.attempt_token,
                    events=events,
                )
            )
        except DispatcherError as error:
            if error.status_code in {404, 409}:
                raise _AttemptOverError(error.detail, canceled=False) from None
            raise

    async def _heartbeat(self, payload: TaskPayload, child: Child | Lane) -> None:
        while True:
            await asyncio.sleep(payload.heartbeat_interval_s)
            try:
                answer = await self.client.heartbeat(
                    HeartbeatRequest(
                        task_id=payload.task_id, attempt_id=payload.attempt_id, attempt_token=payload.attempt_token
                    )
                )
            except DispatcherError as error:
                if error.status_code in {404, 409}:
                    raise _AttemptOverError(error.detail, canceled=False) from None
                log.warning("worker.heartbeat_failed", task_id=str(payload.task_id), error=str(error))
                continue
            except OSError as error:
                log.warning("worker.heartbeat_failed", task_id=str(payload.task_id), error=str(error))
                continue
            if answer.canceled:
                raise _AttemptOverError("canceled on request", canceled=True)

    async def _complete(
        self,
        payload: TaskPayload,
        status: CompletionStatus,
        events: list[EmittedEvent],
        error: str | None,
        retryable: bool,
    ) -> None:
        call = TaskCompleteRequest(
            task_id=payload.task_id,
            attempt_id=payload.attempt_id,
            attempt_token=payload.attempt_token,
            status=status,
            events=events,
            error=error,
            retryable=retryable,
        )
        try:
            answer = await self._completions.submit(call)
        except DispatcherError as refused:
            log.info("worker.completion_refused", task_id=str(payload.task_id), reason=refused.detail)
            return
        except Exception as error:  # the lease runs out and the task is retried: at least once
            log.exception("worker.completion_failed", task_id=str(payload.task_id), error=str(error))
            return
        log.debug("worker.task.completed", task_id=str(payload.task_id), status=answer.task_status.value)

    async def _send_completions(self, calls: list[TaskCompleteRequest]) -> list[TaskCompleteResponse | Exception]:
        results = await self.client.complete_many(calls)
        answers: list[TaskCompleteResponse | Exception] = []
        for result in results:
            if result.response is not None:
                answers.append(result.response)
            else:
                error = result.error or CallError(status_code=500, detail="the dispatcher gave no answer")
                answers.append(DispatcherError(error.status_code, error.detail))
        return answers


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is under `folder` once links and `..` are resolved (two stat calls: fine in the loop)."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


async def _settle(tasks: set[asyncio.Task[None]], timeout_s: float) -> None:
    """Let `tasks` finish for up to `timeout_s`, then cancel the rest."""
    if not tasks:
        return
    _, late = await asyncio.wait(set(tasks), timeout=timeout_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
