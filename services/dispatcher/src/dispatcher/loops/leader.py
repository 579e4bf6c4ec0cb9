"""Leader election: the loops run only in the replica holding a Postgres advisory lock. The lock lives with
the session, so when the leader dies (even by SIGKILL) Postgres releases it and another replica takes over
within a second or two."""

from __future__ import annotations

import asyncio

import psycopg

from dispatcher.loops.context import LoopContext
from dispatcher.loops.operators import run_operators
from dispatcher.loops.reaper import run_reaper
from dispatcher.loops.rebuilds import run_rebuilds
from dispatcher.loops.router import run_router
from dispatcher.loops.scheduler import run_scheduler
from trace_core.db.pool import connect_cancel_safe
from trace_core.logging import get_logger

log = get_logger(__name__)

LEADER_LOCK_KEY = 0x7472616365_02
CHECK_INTERVAL_S = 1.0


class Leader:
    def __init__(self, ctx: LoopContext, database_url: str) -> None:
        self._ctx = ctx
        self._database_url = database_url
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.is_leader = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name="leader")

    async def stop(self, timeout_s: float = 5) -> None:
        """Cancel the loops; a loop stuck in a cancelled database call does not hold the shutdown forever."""
        if self._task is None:
            return
        self._stopping = True
        deadline = asyncio.get_running_loop().time() + timeout_s
        done: set[asyncio.Task[None]] = set()
        # A library may swallow one cancellation while it cleans up a query; cancel again until the task ends.
        while not done and asyncio.get_running_loop().time() < deadline:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=0.5)
        if not done:
            stuck = [frame for task in asyncio.all_tasks() for frame in _where(task)]
            log.warning("dispatcher.leader.stop_timeout", timeout_s=timeout_s, stuck_at=stuck)

    async def _campaign(self) -> None:
        while not self._stopping:
            try:
                async with await connect_cancel_safe(self._database_url, autocommit=True) as conn:
                    while not self._stopping:
                        if await self._try_lock(conn) and not self._stopping:
                            await self._lead(conn)
                        await asyncio.sleep(CHECK_INTERVAL_S)
            except (psycopg.Error, RuntimeError) as error:
                log.warning("dispatcher.leader.lost", error=str(error))
            finally:
                self.is_leader = False
            await asyncio.sleep(CHECK_INTERVAL_S)

    @staticmethod
    async def _try_lock(conn: psycopg.AsyncConnection[tuple[bool]]) -> bool:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def _lead(self, conn: psycopg.AsyncConnection[tuple[bool]]) -> None:
        self.is_leader = True
        log.info("dispatcher.leader.acquired")
        loops = [
            asyncio.create_task(run_router(self._ctx), name="router"),
            asyncio.create_task(run_scheduler(self._ctx), name="scheduler"),
            asyncio.create_task(run_reaper(self._ctx), name="reaper"),
            asyncio.create_task(run_rebuilds(self._ctx), name="rebuilds"),
            asyncio.create_task(run_operators(self._ctx), name="operators"),
        ]
        try:
            while not self._stopping:
                for loop in loops:
                    if loop.done():
                        error = loop.exception()
                        log.error("dispatcher.leader.loop_died", loop=loop.get_name(), error=repr(error))
                        raise RuntimeError(f"loop {loop.get_name()} died: {error!r}")
                # a lost session means a lost lock: stop leading at once
                await conn.execute("SELECT 1")
                await asyncio.sleep(CHECK_INTERVAL_S)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            log.info("dispatcher.leader.released")


def _where(task: asyncio.Task[object]) -> list[str]:
    """Where a task is suspended, as `name: file:line` of its innermost frame (for the stop-timeout log)."""
    frames = task.get_stack()
    if not frames:
        return []
    frame = frames[-1]
    return [f"{task.get_name()}: {frame.f_code.co_filename}:{frame.f_lineno}"]
