"""Rebuild loop: backfills rebuilds, checks whether they caught up, starts new rounds and cuts over
(`lifecycle/cutover.py`). It wakes when tasks finish, and sweeps."""

from __future__ import annotations

import asyncio

from dispatcher.lifecycle.cutover import advance_rebuilds
from dispatcher.loops.context import LoopContext

# Every completion notifies `trace_tasks`; under load a catch-up check per completion would cost a query per
# task for each rebuild, so passes are at least this far apart.
MIN_PASS_INTERVAL_S = 0.1


async def run_rebuilds(ctx: LoopContext) -> None:
    while True:
        seen = ctx.notifications.seq("trace_tasks")
        changed = await advance_rebuilds(ctx)
        await asyncio.sleep(MIN_PASS_INTERVAL_S)
        if not changed:
            await ctx.notifications.wait("trace_tasks", ctx.settings.loop_sweep_s, after=seen)
