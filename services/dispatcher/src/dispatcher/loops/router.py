"""Router: new events become one task per subscribed job, a batch per statement."""

from __future__ import annotations

import asyncio

from dispatcher.loops.context import LoopContext
from dispatcher.repositories import lifecycle as lifecycle_repo
from dispatcher.repositories import tasks as repo
from trace_core.logging import get_logger

log = get_logger(__name__)


async def route_pending_events(ctx: LoopContext) -> int:
    """Route until no unrouted events are left; returns the number of events routed."""
    routed = 0
    while True:
        # pipelined: BEGIN, the lock and the pass go out together (the pass still starts, and takes its snapshot,
        # only once the lock is granted), then the COMMIT
        async with ctx.pool.connection() as conn, conn.pipeline(), conn.transaction():
            # a pass never overlaps a deploy, cutover or rollback changing who reads what (lifecycle.sql)
            await lifecycle_repo.share_routing_lock(conn)
            events, tasks = await repo.route_events(conn, ctx.settings.router_batch)
        routed += events
        ctx.metrics.routed_events.inc(events)
        if tasks:
            ctx.notifications.notify_local("trace_tasks")
        if events < ctx.settings.router_batch:
            return routed


async def run_router(ctx: LoopContext) -> None:
    while True:
        seen = ctx.notifications.seq("trace_events")
        if await route_pending_events(ctx):
            await asyncio.sleep(ctx.settings.loop_coalesce_s)  # as in the scheduler: fewer, larger passes
        await ctx.notifications.wait("trace_events", ctx.settings.loop_sweep_s, after=seen)
