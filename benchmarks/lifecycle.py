"""`make bench-lifecycle`: what the deploy lifecycle costs as a DAG's history grows.

A DAG `source -> sink` whose source has emitted N events, all processed. Then, in-process on one Postgres with the
dispatcher's own code: a redeploy that changes `sink` (a rebuild of one job over N events), the rebuild loop's
backfill (N tasks, in slices under the routing lock), `GET /v1/dags/{dag}` while it rebuilds, the catch-up check
and the cutover transaction once its tasks are done, and a rollback (whose restored job looks for events it
missed: an anti-join over its N tasks). Every task "runs" by being marked Completed in SQL: this measures the
lifecycle's own statements, not operators. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from benchmarks.peers import _fresh_database
from dispatcher.lifecycle.cutover import Rebuild, advance_rebuilds, cut_over
from dispatcher.lifecycle.deploy import DeployResult, deploy_dag
from dispatcher.lifecycle.rollback import RollbackResult, rollback_dag
from dispatcher.lifecycle.status import dag_status
from dispatcher.loops.context import LoopContext
from dispatcher.loops.router import route_pending_events
from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.repositories import lifecycle as lifecycle_repo
from dispatcher.repositories import tasks as tasks_repo
from dispatcher.transports.embedded import EmbeddedTransport
from trace_core.auth.principal import Principal
from trace_core.auth.repository import bootstrap_org, principal_by_token_hash
from trace_core.auth.tokens import hash_token
from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.dag import load_dag_yaml
from trace_core.db.migrate import migrate_url
from trace_core.db.pool import Pool, create_pool
from trace_core.settings import Settings

DAG = """
dag: bench_lc
jobs:
  source: {{activation: source, operator: noop}}
  sink:
    operator: noop
    inputs: [{{from: {{job: source}}}}]
    config: {{generation: {generation}}}
"""
EMIT_BATCH = 5000
T = TypeVar("T")


async def _timed(call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await call()
    return result, time.perf_counter() - started


async def _complete_everything(pool: Pool) -> None:
    """Every live task ran: the lifecycle's statements are measured, not the operators."""
    async with pool.connection() as conn:
        await conn.execute(
            """UPDATE tasks SET status = 'Completed', finished_at = now(), updated_at = now()
               WHERE status IN ('Queued', 'Dispatched', 'Running') AND input_event_id IS NOT NULL"""
        )


async def _history(pool: Pool, ctx: LoopContext, events: int) -> None:
    """The source's run emits `events` events, which the router turns into the sink's tasks."""
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT task_id FROM tasks WHERE input_event_id IS NULL")
        row = await cursor.fetchone()
        assert row is not None
        run = row["task_id"]
        for start in range(0, events, EMIT_BATCH):
            batch = [
                (run, None, EmittedEvent(scope=EventScope(cursor=str(n))))
                for n in range(start, min(events, start + EMIT_BATCH))
            ]
            async with conn.transaction():
                await tasks_repo.insert_events(conn, batch)  # type: ignore[arg-type]
    await route_pending_events(ctx)
    await _complete_everything(pool)


async def run(admin_dsn: str, events: int) -> dict[str, Any]:
    async with _fresh_database(admin_dsn, "bench_lifecycle") as dsn:
        await migrate_url(dsn)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
            _, token = await bootstrap_org(conn, "bench", "admin")
            principal: Principal | None = await principal_by_token_hash(conn, hash_token(token.secret))
        assert principal is not None
        settings = Settings(database_url=dsn, migrate_on_start=False, db_pool_max_size=4)
        pool = create_pool(settings, dsn, name="bench")
        await pool.open(wait=True)
        try:
            ctx = LoopContext(pool, settings, Notifications(dsn), Metrics(), {"ecs_python": EmbeddedTransport()})

            async def deploy(generation: int) -> DeployResult:
                text = DAG.format(generation=generation)
                async with pool.connection() as conn:
                    return await deploy_dag(conn, principal, text, load_dag_yaml(text, source="bench.yaml"))

            async def status() -> dict[str, Any] | None:
                async with pool.connection() as conn:
                    return await dag_status(conn, principal.org_id, "bench_lc")

            async def rollback() -> RollbackResult:
                async with pool.connection() as conn:
                    return await rollback_dag(conn, principal, "bench_lc", None)

            await deploy(1)
            await _history(pool, ctx, events)
            deployed, deploy_s = await _timed(lambda: deploy(2))
            assert deployed.status == "rebuilding"

            _, backfill_s = await _timed(lambda: advance_rebuilds(ctx))
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT count(*) AS n FROM tasks WHERE dag_version_id = %(v)s AND input_event_id IS NOT NULL",
                    {"v": deployed.dag_version_id},
                )
                row = await cursor.fetchone()
                assert row is not None and row["n"] == events, row
            _, status_s = await _timed(status)
            await _complete_everything(pool)
            async with pool.connection() as conn:
                [rebuild] = await lifecycle_repo.rebuilding_versions(conn, settings.cutover_lag_s)
            cut, cutover_s = await _timed(lambda: cut_over(pool, Rebuild.from_row(rebuild)))
            assert cut, "the rebuild should have caught up"
            rolled, rollback_s = await _timed(rollback)
            assert rolled.active_version == 1
        finally:
            await pool.close()
    return {
        "events": events,
        "deploy_ms": round(deploy_s * 1000, 1),
        "backfill_s": round(backfill_s, 3),
        "backfill_tasks_per_s": round(events / backfill_s),
        "status_ms": round(status_s * 1000, 1),
        "cutover_ms": round(cutover_s * 1000, 1),
        "rollback_ms": round(rollback_s * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    admin_dsn = os.environ.get("TRACE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    results = [asyncio.run(run(admin_dsn, n)) for n in args.events]
    print(
        f"{'events':>8} {'deploy ms':>10} {'backfill s':>11} {'tasks/s':>9} {'status ms':>10} {'cutover ms':>11} "
        f"{'rollback ms':>12}"
    )
    for r in results:
        print(
            f"{r['events']:>8} {r['deploy_ms']:>10} {r['backfill_s']:>11} {r['backfill_tasks_per_s']:>9} "
            f"{r['status_ms']:>10} {r['cutover_ms']:>11} {r['rollback_ms']:>12}"
        )
    print(json.dumps({"lifecycle": results}))


if __name__ == "__main__":
    main()
