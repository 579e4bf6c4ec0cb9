"""Throughput of two peer Postgres job queues (PgQueuer, procrastinate) draining no-op jobs.

Each measurement runs in a fresh database on the given server, so the peers and Trace can be
compared in the same run against the same Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg
from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries
from pgqueuer.types import QueueExecutionMode
from procrastinate import App, PsycopgConnector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SETUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
ENQUEUE_CHUNK = 1000


def _drain_timeout(jobs: int) -> float:
    """Upper bound on a drain: a floor plus 20 ms per job, far slower than either peer runs."""
    return 60.0 + jobs / 50


@asynccontextmanager
async def _fresh_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """Create a uniquely named database, yield its DSN, and drop it (forcibly) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True, connect_timeout=10) as admin:
        await asyncio.wait_for(
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))), SETUP_TIMEOUT_S
        )
    try:
        yield make_conninfo(admin_dsn, dbname=name)
    finally:
        # A fresh admin connection: the one above may have timed out while the benchmark ran, and
        # FORCE terminates any session a cancelled worker left behind.
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True, connect_timeout=10) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            await asyncio.wait_for(admin.execute(drop), SETUP_TIMEOUT_S)


def _asyncpg_kwargs(dsn: str) -> dict[str, Any]:
    """Translate any libpq DSN (URI or key=value) into asyncpg.connect keywords; asyncpg parses only URIs."""
    params = conninfo_to_dict(dsn)
    renames = {"host": "host", "port": "port", "user": "user", "password": "password", "dbname": "database"}
    kwargs: dict[str, Any] = {new: params[old] for old, new in renames.items() if params.get(old) is not None}
    if "port" in kwargs:
        kwargs["port"] = int(kwargs["port"])
    return kwargs


async def bench_pgqueuer(admin_dsn: str, jobs: int, batch_size: int) -> float:
    """Jobs/s for PgQueuer draining `jobs` no-op jobs, dequeuing `batch_size` at a time."""
    async with _fresh_database(admin_dsn, "bench_pgqueuer") as dsn:
        conn = await asyncpg.connect(**_asyncpg_kwargs(dsn), timeout=SETUP_TIMEOUT_S)
        try:
            driver = AsyncpgDriver(conn)
            queries = Queries(driver)
            await asyncio.wait_for(queries.install(), SETUP_TIMEOUT_S)
            for start in range(0, jobs, ENQUEUE_CHUNK):
                n = min(ENQUEUE_CHUNK, jobs - start)
                await asyncio.wait_for(queries.enqueue(["noop"] * n, [None] * n, [0] * n), SETUP_TIMEOUT_S)

            pgq = PgQueuer(driver)
            done = 0

            @pgq.entrypoint("noop")
            async def noop(job: Job) -> None:
                nonlocal done
                done += 1

            started = time.perf_counter()
            # Drain mode returns only once the queue is empty and the buffered status log has been
            # flushed, so the clock stops when every job is recorded as done in the database, which
            # is also what procrastinate's clock covers.
            await asyncio.wait_for(pgq.run(batch_size=batch_size, mode=QueueExecutionMode.drain), _drain_timeout(jobs))
            elapsed = time.perf_counter() - started

            if done != jobs:
                raise RuntimeError(f"PgQueuer ran {done} of {jobs} jobs")
            left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
            if left:
                raise RuntimeError(f"PgQueuer left {left} jobs in its queue table")
            return jobs / elapsed
        finally:
            await conn.close(timeout=STOP_TIMEOUT_S)


async def bench_procrastinate(admin_dsn: str, jobs: int, concurrency: int) -> float:
    """Jobs/s for procrastinate draining `jobs` no-op jobs with `concurrency` workers."""
    async with _fresh_database(admin_dsn, "bench_procrastinate") as dsn:
        # The connector's own pool defaults (4 connections, one held by the LISTEN side task) are
        # kept on purpose: larger pools measured no faster on 2 cores, and this is how users run it.
        connector = PsycopgConnector(conninfo=dsn)
        app = App(connector=connector)
        done = 0

        @app.task(name="noop")
        async def noop() -> None:
            nonlocal done
            done += 1

        async with app.open_async():
            await asyncio.wait_for(app.schema_manager.apply_schema_async(), SETUP_TIMEOUT_S)
            for start in range(0, jobs, ENQUEUE_CHUNK):
                n = min(ENQUEUE_CHUNK, jobs - start)
                await asyncio.wait_for(noop.batch_defer_async(*({} for _ in range(n))), SETUP_TIMEOUT_S)

            started = time.perf_counter()
            # wait=False makes the worker return once it finds the queue empty and its in-flight jobs
            # have finished; its own signal handlers would steal Ctrl-C from this script.
            await asyncio.wait_for(
                app.run_worker_async(concurrency=concurrency, wait=False, install_signal_handlers=False),
                _drain_timeout(jobs),
            )
            elapsed = time.perf_counter() - started

            if done != jobs:
                raise RuntimeError(f"procrastinate ran {done} of {jobs} jobs")
            async with connector.pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'")
                row = await cur.fetchone()
            if row is None or row[0]:
                raise RuntimeError(f"procrastinate left {row} jobs unfinished")
            return jobs / elapsed


async def main() -> None:
    """Print each peer's throughput for the batch sizes and concurrencies the comparison uses."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("TRACE_DATABASE_URL", DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    dsn: str = args.dsn
    jobs: int = args.jobs
    # procrastinate warns when its App is built in __main__, since separate worker processes could not
    # import it from there; this script runs the worker in-process with that very App.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)

    for batch_size in (10, 100):
        rate = await bench_pgqueuer(dsn, jobs, batch_size)
        print(f"pgqueuer       batch={batch_size:<4} {rate:>9,.0f} jobs/s", flush=True)
    for concurrency in (1, 4, 32):
        rate = await bench_procrastinate(dsn, jobs, concurrency)
        print(f"procrastinate  concurrency={concurrency:<3} {rate:>9,.0f} jobs/s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
