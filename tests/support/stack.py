"""A running Trace stack for tests: real dispatcher and worker processes over HTTP on loopback, against this
test's database. Timings are shortened so leases, retries and sweeps happen within a test."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from psycopg.rows import dict_row

from trace_core.auth.repository import bootstrap_org

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

FAST = {
    "TRACE_LEASE_S": "2",
    "TRACE_HEARTBEAT_INTERVAL_S": "0.3",
    "TRACE_RETRY_BASE_S": "0.2",
    "TRACE_RETRY_MAX_S": "1",
    "TRACE_LOOP_SWEEP_S": "0.2",
    "TRACE_DISPATCH_TIMEOUT_S": "5",
    "TRACE_WORKER_DRAIN_S": "5",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout_s: float = 30, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""  # where a dispatcher process listens

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
            self.popen.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    database_url: str
    home: Path
    service_token: str
    admin_token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    dispatcher_url: str = ""
    query_url: str = ""

    def spawn(self, name: str, module: str, extra: dict[str, str] | None = None) -> Process:
        log = self.home / f"{name}-{len(self.processes)}.log"
        env = {**os.environ, **self.env, **(extra or {})}
        if module == "worker":
            env.pop("TRACE_DATABASE_URL", None)  # workers never hold database credentials
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_dispatcher(self, extra: dict[str, str] | None = None) -> Process:
        port = free_port()
        process = self.spawn("dispatcher", "dispatcher", {"TRACE_DISPATCHER_PORT": str(port), **(extra or {})})
        url = process.url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _ready(url, process), 30, "the dispatcher to be ready")
        except AssertionError:
            raise AssertionError(process.output()) from None
        if not self.dispatcher_url:
            self.dispatcher_url = url
            self.env["TRACE_DISPATCHER_URL"] = url
        return process

    def start_query_service(self) -> Process:
        """The Query Service on loopback, against this stack's database, object store and dispatcher."""
        port = free_port()
        process = self.spawn("query-service", "query_service", {"TRACE_QUERY_PORT": str(port)})
        url = process.url = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _ready(url, process, "/healthz"), 60, "the Query Service to be ready")
        except AssertionError:
            raise AssertionError(process.output()) from None
        self.query_url = url
        return process

    def query_client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.query_url, headers={"Authorization": f"Bearer {token or self.admin_token}"}, timeout=60
        )

    def start_worker(self, concurrency: int = 4, runtime: str = "ecs_python", **extra: str) -> Process:
        env = {"TRACE_WORKER_CONCURRENCY": str(concurrency), "TRACE_WORKER_RUNTIME": runtime}
        return self.spawn(f"worker-{runtime}", "worker", {**env, **{k.upper(): v for k, v in extra.items()}})

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.dispatcher_url, headers={"Authorization": f"Bearer {token or self.admin_token}"}, timeout=30
        )

    def internal(self) -> httpx.Client:
        return self.client(self.service_token)

    def deploy(self, yaml_text: str) -> dict[str, Any]:
        with self.client() as api:
            response = api.post("/v1/dags", content=yaml_text, headers={"Content-Type": "application/yaml"})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def sql(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(query.encode(), params).fetchall()

    def location(self, dataset: str) -> str:
        """Where the current version of published `dataset` lives: an object-store prefix or a table name."""
        [row] = self.sql(
            "SELECT storage_location FROM current_dataset_versions WHERE dataset_name = %(name)s", {"name": dataset}
        )
        return str(row["storage_location"])

    def task_statuses(self, job: str) -> list[str]:
        rows = self.sql(
            """SELECT t.status FROM tasks t JOIN jobs j ON j.job_id = t.job_id
               WHERE j.job_name = %(job)s ORDER BY t.input_event_id NULLS FIRST""",
            {"job": job},
        )
        return [row["status"] for row in rows]

    def wait_jobs_done(self, jobs: dict[str, int], timeout_s: float = 60) -> None:
        """Wait until each job has exactly that many tasks, all finished."""

        def done() -> bool:
            for job, count in jobs.items():
                statuses = self.task_statuses(job)
                if len(statuses) != count or any(s not in {"Completed", "Failed", "Canceled"} for s in statuses):
                    return False
            return True

        try:
            wait_for(done, timeout_s, f"jobs {jobs} to finish")
        except AssertionError as timed_out:
            seen = self.sql(
                """SELECT j.job_name, t.status, t.last_error, count(*) AS tasks FROM tasks t JOIN jobs j USING (job_id)
                   GROUP BY 1, 2, 3 ORDER BY 1, 2"""
            )
            raise AssertionError(f"{timed_out}; tasks seen: {seen}") from None

    def stop(self, grace_s: float = 1.0) -> None:
        """SIGTERM every process at once; whatever still runs after `grace_s` (a worker draining a long-running
        source, say) is SIGKILLed: the test is over, and its drain is tested on its own."""
        running = [process.popen for process in self.processes if process.popen.poll() is None]
        for popen in running:
            popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for popen in running:
            try:
                popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=30)


def _ready(url: str, process: Process, probe: str = "/readyz") -> bool:
    if process.popen.poll() is not None:
        raise AssertionError(f"{process.name} exited: {process.output()}")
    try:
        return httpx.get(f"{url}{probe}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def _bootstrap(database_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        _, token = await bootstrap_org(conn, "acme", "admin")
    return token.secret


@contextmanager
def running_stack(database_url: str, home: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    home.mkdir(parents=True, exist_ok=True)
    stack = Stack(database_url=database_url, home=home, service_token=secrets.token_urlsafe(24))
    stack.env = {
        **FAST,
        "TRACE_DATABASE_URL": database_url,
        "TRACE_HOME": str(home),
        "TRACE_SERVICE_TOKEN": stack.service_token,
        "TRACE_MIGRATE_ON_START": "false",
        "TRACE_UDF_PATH": str(REPO),
        "TRACE_LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }
    stack.admin_token = asyncio.run(_bootstrap(database_url))
    try:
        yield stack
    finally:
        stack.stop()
