"""Reaper: expired leases become TimedOut attempts and retries (or Failed), lost dispatches go back to the
queue, and leases of finished tasks are released."""

from __future__ import annotations

import asyncio

from dispatcher.loops.context import LoopContext
from dispatcher.repositories import tasks as repo
from trace_core.logging import get_logger

log = get_logger(__name__)


async def reap(ctx: LoopContext) -> int:
    """One pass; returns how many tasks it changed."""
    settings = ctx.settings
    async with ctx.pool.connection() as conn:
        async with conn.transaction():
            outcomes = await repo.reap_expired_attempts(conn, settings.retry_base_s, settings.retry_max_s)
        async with conn.transaction():
            requeued = await repo.requeue_stale_dispatches(conn, settings.dispatch_timeout_s)
        async with conn.transaction():
            released = await repo.release_orphan_leases(conn)
    reaped = sum(outcomes.values())
    if reaped:
        ctx.metrics.reaped.inc(reaped)
        log.info("dispatcher.reaper.leases_expired", **{status.lower(): n for status, n in outcomes.items()})
    if requeued:
        log.info("dispatcher.reaper.dispatches_requeued", tasks=requeued)
    if reaped or requeued or released:
        ctx.notifications.notify_local("trace_tasks")
    return reaped + requeued


async def run_reaper(ctx: LoopContext) -> None:
    while True:
        await reap(ctx)
        await asyncio.sleep(min(1.0, ctx.settings.loop_sweep_s))
