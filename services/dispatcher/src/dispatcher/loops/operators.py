"""The operators the dispatcher runs itself (range_aggregator, range_splitter; docs/chain.md), in the leader.

A task of one is microseconds of arithmetic over its input event and the job's state; through a worker it cost a
dispatch, a fetch, two operator-state calls and a completion (~50 ms), one task after another, so a backfill of
per-block events crawled at ~15 blocks/s. A pass here takes each such job's oldest queued tasks
(`TRACE_OPERATOR_BATCH`; fewer once they emitted `TRACE_OPERATOR_PASS_EVENTS`) and, in one transaction, applies
them in event order, stores each job's operator state, inserts the events they emit (deduplicated on (producer
task, dataset, scope) as always), and records one attempt per task (worker `dispatcher`) with the task's outcome.
A crash before the commit leaves all of it undone. The router applies the tasks it makes the same way, in its own
pass (`apply_routed`), unless their job has queued tasks: those, and what comes after them, are this loop's.

Order (SPEC §4): passes never overlap, the router's included (an advisory lock, across replicas too), and a pass
applies a job's tasks one after another in event order, each to the state the one before left. So no two tasks of a
job ever run at once, which is within every `max_concurrency`, keeps event order for `PerUpdate`, and keeps it within
each partition for `PerPartition`. A task waiting for its retry time keeps its place: nothing after it in its job runs
before it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from dispatcher.loops.context import LoopContext
from dispatcher.operators import OPERATORS
from dispatcher.operators.base import InputEvent, TaskError
from dispatcher.repositories import operator_state as state_repo
from dispatcher.repositories import operator_tasks as repo
from dispatcher.repositories import tasks as tasks_repo
from trace_core.contracts.events import EmittedEvent, EventKind
from trace_core.db.pool import Connection
from trace_core.db.queries import Row
from trace_core.logging import get_logger

log = get_logger(__name__)


async def run_operator_tasks(ctx: LoopContext) -> int:
    """One pass; returns how many tasks it finished."""
    async with ctx.pool.connection() as conn, conn.transaction():
        await repo.lock_operator_runs(conn)
        rows = await repo.ready_operator_tasks(conn, ctx.settings.operator_batch)
        outcomes: list[tuple[UUID, str | None]] = []
        emitted: list[tuple[UUID, EmittedEvent]] = []
        for job_rows in _by_job(rows):
            run = await _apply_job(conn, job_rows, job_rows[0]["config"], ctx.settings.operator_pass_events)
            outcomes += [(row["task_id"], error) for row, error in run.outcomes]
            emitted += [(row["task_id"], event) for row, event in run.emitted]
        if not outcomes:
            return 0
        attempts = await repo.record_operator_attempts(conn, outcomes)
        await tasks_repo.insert_events(conn, [(task_id, attempts[task_id], event) for task_id, event in emitted])
    report_finished(ctx, outcomes, bool(emitted))
    return len(outcomes)


@dataclass
class Applied:
    """What a router pass applied: the finished tasks' outcomes, the tasks it queued, whether they emitted events."""

    outcomes: list[tuple[UUID, str | None]]
    queued: int
    emitted: bool


async def apply_routed(conn: Connection, rows: list[Row], events_per_pass: int) -> Applied:
    """A router pass's share (`route_events`' rows, by job in event order; call holding the operator lock): the tasks
    the pass inserted Completed, each job's applied as a pass of the loop applies them; then the job's state, their
    events, and the tasks that failed (with their attempt) or, past the job's event budget, wait for the loop."""
    outcomes: list[tuple[UUID, str | None]] = []
    amends: list[tuple[UUID, str | None]] = []
    emitted: list[tuple[UUID, UUID, EmittedEvent]] = []
    for _, grouped in itertools.groupby(rows, key=lambda row: row["job_id"]):
        job_rows = list(grouped)
        run = await _apply_job(conn, job_rows, json.loads(job_rows[0]["config"]), events_per_pass)
        outcomes += [(row["task_id"], error) for row, error in run.outcomes]
        amends += [(row["task_id"], error) for row, error in run.outcomes if error is not None]
        amends += [(row["task_id"], None) for row in job_rows[len(run.outcomes) :]]
        emitted += [(row["task_id"], row["attempt_id"], event) for row, event in run.emitted]
    await tasks_repo.amend_applied_tasks(conn, amends)
    await tasks_repo.insert_events(conn, emitted)
    return Applied(outcomes, len(rows) - len(outcomes), bool(emitted))


def report_finished(ctx: LoopContext, outcomes: list[tuple[UUID, str | None]], emitted: bool) -> None:
    """After the commit: metrics, a warning per failed task, and the notifications."""
    ctx.metrics.attempts.inc(len(outcomes))
    for task_id, error in outcomes:
        if error is not None:
            log.warning("dispatcher.operators.task_failed", task_id=str(task_id), error=error)
    ctx.notifications.publish("trace_tasks")
    if emitted:
        ctx.notifications.publish("trace_events")


def _by_job(rows: list[Row]) -> Iterator[list[Row]]:
    """The rows of each job, in event order; a job's tasks stop at the first one waiting for its retry time."""
    for _, job_rows in itertools.groupby(rows, key=lambda row: row["job_id"]):
        ready = list(itertools.takewhile(lambda row: row["ready"], job_rows))
        if ready:
            yield ready


@dataclass
class _JobRun:
    """What applying a job's tasks gave: the tasks it took with their errors (None: completed), and the events
    they emitted."""

    outcomes: list[tuple[Row, str | None]] = field(default_factory=list)
    emitted: list[tuple[Row, EmittedEvent]] = field(default_factory=list)


async def _apply_job(conn: Connection, rows: list[Row], config: dict[str, Any], events_per_pass: int) -> _JobRun:
    """Lock the job's state, apply its tasks to it in order, with the job's `config`, and store the state they
    leave. The job's tasks stop once they emitted `events_per_pass` events (a splitter's range may be 100,000 units):
    one transaction holds no more, and the rest wait for the next pass."""
    job = rows[0]
    run = _JobRun()
    stored = await state_repo.lock_state(conn, job["org_id"], job["job_id"])
    before = None if stored is None else stored["state"]
    try:
        operator_pass = OPERATORS[job["operator"]](config, before)
    except TaskError as error:  # its config does not parse: no task of the job can run
        run.outcomes = [(row, str(error)) for row in rows]
        return run
    events = 0
    for row in rows:
        try:
            produced = operator_pass.apply(_input(row))
        except TaskError as error:
            run.outcomes.append((row, str(error)))
            continue
        run.outcomes.append((row, None))
        run.emitted += [(row, event) for event in produced]
        events += len(produced)
        if events >= events_per_pass:
            break
    state = operator_pass.state()
    if state is not None and state != before:
        revision = 0 if stored is None else stored["revision"]
        last = run.outcomes[-1][0]["task_id"]
        if await state_repo.swap_state(conn, job["org_id"], job["job_id"], revision, state, last) is None:
            raise RuntimeError(f"the operator state of job {job['job_id']} changed while it was locked")
    return run


def _input(row: Row) -> InputEvent | None:
    if row["kind"] is None:
        return None
    span = None if row["range_start"] is None else (int(row["range_start"]), int(row["range_end"]))
    return InputEvent(EventKind(row["kind"]), span)


async def run_operators(ctx: LoopContext) -> None:
    while True:
        seen = ctx.notifications.seq("trace_tasks")
        try:
            finished = await run_operator_tasks(ctx)
        except psycopg.Error:
            # the pass's transaction is undone, tasks and state alike; the other loops go on, and this one tries again
            log.exception("dispatcher.operators.pass_failed")
            await asyncio.sleep(ctx.settings.loop_sweep_s)
            continue
        if finished:
            await asyncio.sleep(ctx.settings.loop_coalesce_s)  # as the scheduler: fewer, larger passes
        await ctx.notifications.wait("trace_tasks", ctx.settings.loop_sweep_s, after=seen)
