"""Scheduler: ready tasks go to their runtime's transport while every limit allows (backpressure keeps the
rest in Postgres)."""

from __future__ import annotations

import asyncio

from dispatcher.loops.context import LoopContext
from dispatcher.repositories import tasks as repo
from trace_core.logging import get_logger

log = get_logger(__name__)


async def dispatch_ready(ctx: LoopContext) -> int:
    """Dispatch until nothing more may go; returns the number of tasks dispatched."""
    total = 0
    for runtime, transport in ctx.transports.items():
        while True:
            async with ctx.pool.connection() as conn:  # one statement, its own transaction: one round trip
                rows = await repo.dispatch_ready_tasks(
                    conn,
                    runtime,
                    limit=ctx.settings.scheduler_batch,
                    inflight_limit=ctx.settings.inflight_limit,
                    dispatch_timeout_s=ctx.settings.dispatch_timeout_s,
                    embedded=transport.in_database,
                )
            if rows:
                if transport.in_database:
                    ctx.notifications.publish("trace_dispatched", runtime)
                ctx.metrics.dispatched.labels(runtime).inc(len(rows))
                for row in rows:
                    if row["latency_s"] is not None:
                        ctx.metrics.dispatch_latency.observe(row["latency_s"])
                if not transport.in_database:
                    failed = await transport.send(runtime, [row["task_id"] for row in rows])
                    if failed:
                        async with ctx.pool.connection() as conn:
                            await repo.undispatch(conn, failed)
                        log.warning("dispatcher.scheduler.transport_refused", runtime=runtime, tasks=len(failed))
            total += len(rows)
            if len(rows) < ctx.settings.scheduler_batch:
                break
    return total


async def run_scheduler(ctx: LoopContext) -> None:
    while True:
        seen = ctx.notifications.seq("trace_tasks")
        if await dispatch_ready(ctx):
            # Under load every completion wakes the scheduler; a short pause lets a pass take many at once
            # instead of paying a full pass per freed slot.
            await asyncio.sleep(ctx.settings.loop_coalesce_s)
        await ctx.notifications.wait("trace_tasks", ctx.settings.loop_sweep_s, after=seen)
