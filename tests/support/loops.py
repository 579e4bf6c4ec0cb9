"""The dispatcher leader's loops, run by a test one pass at a time (against a dispatcher started without loops, or
no dispatcher at all), in an event loop of their own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dispatcher.loops.context import LoopContext
from dispatcher.loops.operators import run_operator_tasks
from dispatcher.loops.router import route_pending_events
from dispatcher.loops.scheduler import dispatch_ready
from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.transports.base import Transport
from dispatcher.transports.embedded import EmbeddedTransport
from trace_core.db.pool import create_pool
from trace_core.settings import Settings


class Loops:
    def __init__(self, runner: asyncio.Runner, ctx: LoopContext) -> None:
        self.runner = runner
        self.ctx = ctx

    @classmethod
    @contextmanager
    def running(cls, database_url: str, **settings: Any) -> Iterator[Loops]:
        """The loops on `database_url`, with these settings (e.g. `operator_batch=3`)."""
        config = Settings(database_url=database_url, migrate_on_start=False, **settings)
        with asyncio.Runner() as runner:
            pool = create_pool(config, database_url, name="test-loops")
            runner.run(pool.open(wait=True))
            transports: dict[str, Transport] = {"ecs_python": EmbeddedTransport()}
            try:
                yield cls(runner, LoopContext(pool, config, Notifications(database_url), Metrics(), transports))
            finally:
                runner.run(pool.close())

    def dispatch(self) -> int:
        return self.runner.run(dispatch_ready(self.ctx))

    def route(self) -> int:
        return self.runner.run(route_pending_events(self.ctx))

    def operators(self) -> int:
        return self.runner.run(run_operator_tasks(self.ctx))

    def race(self, passes: int) -> int:
        """`passes` operator loops at once, each running passes until it finds nothing; the tasks they finished."""

        async def drain() -> int:
            done = 0
            while finished := await run_operator_tasks(self.ctx):
                done += finished
            return done

        async def together() -> list[int]:
            return await asyncio.gather(*(drain() for _ in range(passes)))

        return sum(self.runner.run(together()))
