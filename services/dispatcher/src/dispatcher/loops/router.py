"""Router: new events become one task per subscribed job, a batch per statement.

The tasks of the operators the dispatcher runs itself (loops/operators.py) are inserted Completed and applied in the
same pass, before it commits (`TRACE_ROUTER_APPLIES_OPERATORS`): inserted Queued, each would cost a second pass that
finds, locks and updates it. A job with a queued task of its own (waiting for the operator loop or for its retry time)
gets its new tasks Queued behind it, so nothing overtakes it. The pass holds the operator loop's lock, taken before
its snapshot: the two never overlap, so each job's tasks are still applied one after another, in event order.
"""

from __future__ import annotations

import asyncio

from dispatcher.loops import operators
from dispatcher.loops.context import LoopContext
from dispatcher.repositories import lifecycle as lifecycle_repo
from dispatcher.repositories import operator_tasks as operator_repo
from dispatcher.repositories import tasks as repo
from trace_core.logging import get_logger

log = get_logger(__name__)


async def route_pending_events(ctx: LoopContext) -> int:
    """Route until no unrouted events are left; returns the number of events routed."""
    routed = 0
    applying = ctx.settings.router_applies_operators
    while True:
        applied = None
        # pipelined: BEGIN, the locks and the pass go out together (the pass still starts, and takes its snapshot,
        # only once the locks are granted), then the COMMIT
        async with ctx.pool.connection() as conn, conn.pipeline(), conn.transaction():
            # a pass never overlaps a deploy, cutover or rollback changing who reads what (lifecycle.sql)
            await lifecycle_repo.share_routing_lock(conn)
            if applying:
                await operator_repo.lock_operator_runs(conn)
            events, tasks, to_apply = await repo.route_events(conn, ctx.settings.router_batch, applying)
            if to_apply:
                applied = await operators.apply_routed(conn, to_apply, ctx.settings.operator_pass_events)
        routed += events
        ctx.metrics.routed_events.inc(events)
        if applied is not None:
            operators.report_finished(ctx, applied.outcomes, applied.emitted)
            tasks += applied.queued
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
