"""Postgres LISTEN/NOTIFY, fanned out to asyncio waiters in this process.

Channels: `trace_events` (events were emitted: wake the router), `trace_tasks` (tasks became ready or freed
capacity: wake the scheduler), `trace_dispatched` (task ids entered the embedded transport: wake polls).
Every replica listens, so a long poll served by any replica wakes when the leader dispatches.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg

from trace_core.logging import get_logger

log = get_logger(__name__)

CHANNELS = ("trace_events", "trace_tasks", "trace_dispatched")


class Notifications:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._events = {channel: asyncio.Event() for channel in CHANNELS}
        self._seq = dict.fromkeys(CHANNELS, 0)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="notifications")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def notify_local(self, channel: str) -> None:
        """Wake this process's waiters on `channel` without a round trip to Postgres."""
        self._seq[channel] += 1
        event = self._events[channel]
        self._events[channel] = asyncio.Event()
        event.set()

    def seq(self, channel: str) -> int:
        """How many notifications `channel` has had; pass it to `wait` to miss none that come meanwhile."""
        return self._seq[channel]

    async def wait(self, channel: str, timeout_s: float, after: int | None = None) -> bool:
        """Wait for a notification on `channel` later than `after` (default: from now); False on timeout."""
        if after is not None and self._seq[channel] != after:
            return True
        event = self._events[channel]
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._database_url, autocommit=True) as conn:
                    for channel in CHANNELS:
                        await conn.execute(f"LISTEN {channel}")
                    async for notify in conn.notifies():
                        self.notify_local(notify.channel)
            except psycopg.OperationalError as error:
                log.warning("dispatcher.notifications.reconnecting", error=str(error))
                # Wake everyone: what they wait for may have happened while we were not listening.
                for channel in CHANNELS:
                    self.notify_local(channel)
                await asyncio.sleep(1)
