"""`make bench-dispatch`: N noop tasks through Trace's whole lifecycle, beside PgQueuer and procrastinate
draining N noop jobs, in one run on the same Postgres (see BENCHMARKS.md).

Lifecycle: events accepted over HTTP -> router -> tasks -> scheduler -> embedded transport -> worker wrapper
task-fetch over HTTP -> noop operator in a child -> task-complete over HTTP with one emitted event.
Core path: the same router, scheduler and completion code in-process, with no HTTP and no workers.
Latency: events offered at a steady rate; time from an event being accepted to its task being dispatched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from benchmarks.peers import _fresh_database, bench_pgqueuer, bench_procrastinate
from dispatcher.internal.service import WorkerApi
from dispatcher.lifecycle.deploy import deploy_dag
from dispatcher.loops.context import LoopContext
from dispatcher.loops.router import run_router
from dispatcher.loops.scheduler import dispatch_ready, run_scheduler
from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.repositories import tasks as tasks_repo
from dispatcher.transports.embedded import EmbeddedTransport
from trace_core.auth.repository import bootstrap_org, principal_by_token_hash
from trace_core.auth.tokens import hash_token
from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.internal import (
    MAX_BATCH,
    CompletionStatus,
    EmitEventsRequest,
    TaskCompleteBatchRequest,
    TaskCompleteRequest,
    TaskFetchBatchRequest,
    TaskPollRequest,
)
from trace_core.contracts.tasks import TaskPayload
from trace_core.dag import load_dag_yaml
from trace_core.dag.config import Runtime
from trace_core.db.embedded import start_embedded_postgres
from trace_core.db.migrate import migrate_url
from trace_core.db.pool import create_pool
from trace_core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DAG = """
dag: bench
jobs:
  source: {activation: source, operator: noop}
  sink:
    operator: noop
    inputs: [{from: {job: source}}]
    scaling: {max_concurrency: 10000}
    max_attempts: 3
"""
EMIT_BATCH = 1000
CORE_CONSUMERS = 4  # pollers of the core path, each one batch of up to MAX_BATCH in flight (see docs/dispatcher.md)
CORE_POLL_WAIT_S = 5.0  # a worker's long poll (worker.wrapper.POLL_WAIT_S)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _prepare(dsn: str) -> str:
    await migrate_url(dsn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        _, token = await bootstrap_org(conn, "bench", "admin")
    return token.secret


def _events(count: int, offset: int = 0) -> list[EmittedEvent]:
    return [EmittedEvent(scope=EventScope(cursor=str(offset + i))) for i in range(count)]


async def _count_completed(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM tasks WHERE status = 'Completed' AND input_event_id IS NOT NULL"
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _wait_completed(dsn: str, count: int) -> None:
    while True:
        if await _count_completed(dsn) >= count:
            return
        await asyncio.sleep(0.02)


async def _latencies_ms(dsn: str) -> list[float]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            """SELECT extract(epoch FROM t.dispatched_at - e.created_at) * 1000 FROM tasks t
               JOIN events e ON e.event_id = t.input_event_id WHERE t.dispatched_at IS NOT NULL"""
        )
        return [float(row[0]) for row in await cursor.fetchall()]


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


class LiveStack:
    """Dispatcher and worker processes on loopback against one database."""

    def __init__(
        self, dsn: str, workers: int, concurrency: int, logs: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service_token = secrets.token_urlsafe(24)
        self.env = {
            **os.environ,
            "TRACE_DATABASE_URL": dsn,
            "TRACE_DISPATCHER_PORT": str(self.port),
            "TRACE_DISPATCHER_URL": self.url,
            "TRACE_SERVICE_TOKEN": self.service_token,
            "TRACE_MIGRATE_ON_START": "false",
            "TRACE_WORKER_CONCURRENCY": str(concurrency),
            "TRACE_DB_POOL_MAX_SIZE": "20",
            **(extra_env or {}),
        }
        self.workers, self.logs = workers, logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, module: str, name: str, log_level: str = "WARNING") -> None:
        with (self.logs / f"{name}.log").open("wb") as out:
            env = {**self.env, "TRACE_LOG_LEVEL": log_level}
            self.processes.append(
                subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT)
            )

    async def start_dispatcher(self) -> None:
        self._spawn("dispatcher", "dispatcher")
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the dispatcher did not start; see its log")

    async def start_workers(self) -> None:
        """Start the workers and wait until each has its operator children up and polls: starting `workers *
        concurrency` interpreters takes seconds of both cores, which is not per-task work."""
        for index in range(self.workers):
            self._spawn("worker", f"worker-{index}", log_level="INFO")
        logs = [self.logs / f"worker-{index}.log" for index in range(self.workers)]
        for _ in range(600):
            if all(b"worker.started" in log.read_bytes() for log in logs):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the workers did not start; see their logs")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


async def _take_source_attempt(internal: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(200):
        answer = await internal.post("/internal/task-poll", json={"runtime": "ecs_python", "worker_id": "bench"})
        ids = answer.json()["task_ids"]
        if ids:
            fetched = await internal.get("/internal/task-fetch", params={"task_id": ids[0], "worker_id": "bench"})
            payload: dict[str, Any] = fetched.json()
            return payload
        await asyncio.sleep(0.05)
    raise RuntimeError("the source run was never dispatched")


async def bench_lifecycle(admin_dsn: str, tasks: int, workers: int, concurrency: int, logs: Path) -> dict[str, float]:
    async with _fresh_database(admin_dsn, "bench_trace") as dsn:
        token = await _prepare(dsn)
        stack = LiveStack(dsn, workers, concurrency, logs)
        try:
            await stack.start_dispatcher()
            async with (
                httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}) as api,
                httpx.AsyncClient(
                    base_url=stack.url, headers={"Authorization": f"Bearer {stack.service_token}"}, timeout=60
                ) as internal,
            ):
                deployed = await api.post("/v1/dags", content=DAG)
                assert deployed.status_code == 201, deployed.text
                source = await _take_source_attempt(internal)
                beat = {k: source[k] for k in ("task_id", "attempt_id", "attempt_token")}

                async def heartbeat() -> None:  # the benchmark plays the source's worker
                    while True:
                        await asyncio.sleep(2)
                        await internal.post("/internal/heartbeat", json=beat)

                beating = asyncio.create_task(heartbeat())
                await stack.start_workers()

                async def emit(events: list[EmittedEvent]) -> None:
                    body = EmitEventsRequest(
                        task_id=source["task_id"],
                        attempt_id=source["attempt_id"],
                        attempt_token=source["attempt_token"],
                        events=events,
                    )
                    answer = await internal.post("/internal/events", content=body.model_dump_json())
                    assert answer.status_code == 200, answer.text

                started = time.perf_counter()
                for offset in range(0, tasks, EMIT_BATCH):
                    await emit(_events(min(EMIT_BATCH, tasks - offset), offset))
                await _wait_completed(dsn, tasks)
                elapsed = time.perf_counter() - started
                throughput = tasks / elapsed

                # latency at a steady offered load: one event every 5 ms (200 tasks/s) for 5 s
                await _reset_latency_window(dsn)
                offered, interval = 1000, 1 / 200
                begin = time.perf_counter()
                for index in range(offered):
                    await emit(_events(1, tasks + index))
                    await asyncio.sleep(max(0.0, begin + (index + 1) * interval - time.perf_counter()))
                await _wait_completed(dsn, tasks + offered)
                latencies = await _latencies_ms(dsn)
                beating.cancel()
        finally:
            stack.stop()
    return {
        "trace_tasks_per_s": throughput,
        "dispatch_latency_p50_ms": _percentile(latencies, 50),
        "dispatch_latency_p99_ms": _percentile(latencies, 99),
    }


async def _reset_latency_window(dsn: str) -> None:
    """Only the steady-load phase counts for latency: forget the dispatch times of the burst."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE tasks SET dispatched_at = NULL WHERE status = 'Completed'")


async def _fetch_and_complete(api: WorkerApi, task_ids: list[Any]) -> int:
    fetched = await api.fetch_many(TaskFetchBatchRequest(task_ids=task_ids, worker_id="bench"))
    completions = [
        TaskCompleteRequest(
            task_id=result.payload.task_id,
            attempt_id=result.payload.attempt_id,
            attempt_token=result.payload.attempt_token,
            status=CompletionStatus.SUCCEEDED,
            events=[EmittedEvent(scope=result.payload.input_event.scope)] if result.payload.input_event else [],
        )
        for result in fetched.results
        if result.payload is not None
    ]
    answered = await api.complete_many(TaskCompleteBatchRequest(completions=completions))
    return sum(1 for result in answered.results if result.response is not None)


async def _stop(loops: list[asyncio.Task[None]]) -> None:
    """Cancel the loops; a database call being cancelled can swallow a cancellation (as in loops/leader.py), so
    cancel again until they end."""
    pending = set(loops)
    while pending:
        for loop in pending:
            loop.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


async def bench_core(admin_dsn: str, tasks: int, pool_size: int, consumers: int = CORE_CONSUMERS) -> float:
    """Router + scheduler + batched fetch/complete in-process: Trace's queue without HTTP or workers.

    The dispatcher's own router and scheduler loops run, woken by its in-process notifications as in production,
    while `consumers` pollers take ids from the embedded transport as a worker does and start and finish each batch
    with one fetch and one complete. Until 2026-12-03 the stages ran one after another (route, dispatch, take,
    fetch/complete), so one big statement ran while the rest of the process idled.
    """
    async with _fresh_database(admin_dsn, "bench_trace_core") as dsn:
        token = await _prepare(dsn)
        settings = Settings(database_url=dsn, inflight_limit=tasks, db_pool_max_size=pool_size)
        pool = create_pool(settings, dsn, name="bench")
        await pool.open(wait=True)
        notifications = Notifications(dsn)
        metrics = Metrics()
        api = WorkerApi(pool, settings, notifications, metrics)
        ctx = LoopContext(pool, settings, notifications, metrics, {"ecs_python": EmbeddedTransport()})
        loops: list[asyncio.Task[None]] = []
        try:
            async with pool.connection() as conn:
                principal = await principal_by_token_hash(conn, hash_token(token))
                assert principal is not None
                await deploy_dag(conn, principal, DAG, load_dag_yaml(DAG))
            await dispatch_ready(ctx)
            async with pool.connection() as conn:
                [source_id] = await tasks_repo.take_from_transport_queue(conn, "ecs_python", 10)
            source = await api.fetch(source_id, "bench")
            assert isinstance(source, TaskPayload)

            for offset in range(0, tasks, EMIT_BATCH):
                await api.emit(
                    EmitEventsRequest(
                        task_id=source.task_id,
                        attempt_id=source.attempt_id,
                        attempt_token=source.attempt_token,
                        events=_events(min(EMIT_BATCH, tasks - offset), offset),
                    )
                )
            done = 0
            finished = asyncio.Event()
            poll = TaskPollRequest(
                runtime=Runtime.ECS_PYTHON, worker_id="bench", max_tasks=MAX_BATCH, wait_s=CORE_POLL_WAIT_S
            )

            async def consume() -> None:  # a worker's way, minus HTTP: poll, one fetch and one complete per batch
                nonlocal done
                while True:
                    ready = (await api.poll(poll)).task_ids
                    if ready:
                        completed = await _fetch_and_complete(api, ready)
                        done += completed  # not `done += await`: that reads `done` before the await
                        if done >= tasks:
                            finished.set()

            # the clock starts with the events stored, as the peers' start with their jobs enqueued
            started = time.perf_counter()
            loops = [asyncio.create_task(run_router(ctx)), asyncio.create_task(run_scheduler(ctx))]
            loops += [asyncio.create_task(consume()) for _ in range(consumers)]
            waiting = asyncio.create_task(finished.wait())
            await asyncio.wait([waiting, *loops], return_when=asyncio.FIRST_COMPLETED)
            elapsed = time.perf_counter() - started
            for loop in loops:
                if loop.done():
                    raise RuntimeError(f"a core-path loop ended before {tasks} tasks were done") from loop.exception()
        finally:
            await _stop(loops)
            await api.close()
            await pool.close()
    return tasks / elapsed


async def _default_server() -> str:
    """This machine's PostgreSQL when it answers on 127.0.0.1:5432, else the embedded one."""
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        async with await psycopg.AsyncConnection.connect(local, connect_timeout=3):
            return local
    except psycopg.OperationalError:
        return start_embedded_postgres(REPO / ".trace" / "bench-pgdata")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn", default=os.environ.get("TRACE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--peer-jobs", type=int, default=3000, help="jobs per procrastinate run (it is slow)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--logs", type=Path, default=REPO / ".trace" / "bench-logs")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    args.dsn = args.dsn or await _default_server()

    lifecycle = await bench_lifecycle(args.dsn, args.tasks, args.workers, args.concurrency, args.logs)
    core = await bench_core(args.dsn, args.tasks, pool_size=16)
    pgqueuer_10 = await bench_pgqueuer(args.dsn, args.tasks, 10)
    pgqueuer_100 = await bench_pgqueuer(args.dsn, args.tasks, 100)
    procrastinate = {c: await bench_procrastinate(args.dsn, args.peer_jobs, c) for c in (1, 4, 32)}
    best_procrastinate = max(procrastinate.values())
    result = {
        **lifecycle,
        "trace_core_tasks_per_s": core,
        "pgqueuer_jobs_per_s": pgqueuer_10,
        "pgqueuer_batch100_jobs_per_s": pgqueuer_100,
        "procrastinate_jobs_per_s": best_procrastinate,
        "tasks": args.tasks,
    }
    rows = [
        ("Trace full lifecycle (HTTP, workers)", f"{lifecycle['trace_tasks_per_s']:,.0f} tasks/s"),
        ("Trace core path (in-process)", f"{core:,.0f} tasks/s"),
        ("PgQueuer batch 10 / 100", f"{pgqueuer_10:,.0f} / {pgqueuer_100:,.0f} jobs/s"),
        ("procrastinate concurrency 1 / 4 / 32", " / ".join(f"{v:,.0f}" for v in procrastinate.values()) + " jobs/s"),
        ("lifecycle / best procrastinate", f"{lifecycle['trace_tasks_per_s'] / best_procrastinate:.1f}x"),
        ("core / PgQueuer batch 10", f"{core / pgqueuer_10:.2f}x"),
        (
            "event -> dispatch p50 / p99 at 200/s",
            f"{lifecycle['dispatch_latency_p50_ms']:.1f} / {lifecycle['dispatch_latency_p99_ms']:.1f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
