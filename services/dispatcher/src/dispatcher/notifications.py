"""Wake-ups between the dispatcher's parts: in-process at once, across replicas by Postgres NOTIFY.

Channels: `trace_events` (events were emitted: wake the router), `trace_tasks` (tasks became ready or freed
capacity: wake the scheduler), `trace_dispatched` (task ids entered the embedded transport: wake polls).
Every replica listens, so a long poll served by any replica wakes when the leader dispatches.

NOTIFY is never sent from the hot transactions themselves: Postgres serializes the commits of notifying
transactions on one global lock, which would cap task completions at one commit (one WAL flush) at a time.
`publish` wakes this process's waiters at once and sends at most one NOTIFY per channel per
`COALESCE_S`, on a connection of its own, after the caller's commit. The listener drops what that connection
sent: those waiters were woken already, and waking them twice doubles the loops' passes under load.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg

from dispatcher.repositories import notifications as repo
from trace_core.db.pool import connect_cancel_safe
from trace_core.logging import get_logger

log = get_logger(__name__)

CHANNELS = ("trace_events", "trace_tasks", "trace_dispatched")
COALESCE_S = 0.005


class Notifications:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._events = {channel: asyncio.Event() for channel in CHANNELS}
        self._seq = dict.fromkeys(CHANNELS, 0)
        self._outgoing: dict[str, str] = {}
        self._outgoing_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sender_pid: int | None = None  # backend of the connection `_send` notifies on

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="notifications.listen"),
            asyncio.create_task(self._send(), name="notifications.send"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def publish(self, channel: str, payload: str = "") -> None:
        """After a commit: wake waiters here now, and the other replicas shortly."""
        self.notify_local(channel)
        self._outgoing[channel] = payload
        self._outgoing_ready.set()

    async def _send(self) -> None:
        while True:
            try:
                async with await connect_cancel_safe(self._database_url, autocommit=True) as conn:
                    self._sender_pid = conn.info.backend_pid
                    while True:
                        await self._outgoing_ready.wait()
                        self._outgoing_ready.clear()
                        outgoing, self._outgoing = self._outgoing, {}
                        await repo.notify_channels(conn, outgoing)
                        await asyncio.sleep(COALESCE_S)
            except psycopg.OperationalError as error:
                log.warning("dispatcher.notifications.send_failed", error=str(error))
                await asyncio.sleep(1)

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
                async with await connect_cancel_safe(self._database_url, autocommit=True) as conn:
                    for channel in CHANNELS:
                        await conn.execute(f"LISTEN {channel}")
                    async for notify in conn.notifies():
                        if notify.pid != self._sender_pid:
                            self.notify_local(notify.channel)
            except psycopg.OperationalError as error:
                log.warning("dispatcher.notifications.reconnecting", error=str(error))
                # Wake everyone: what they wait for may have happened while we were not listening.
                for channel in CHANNELS:
                    self.notify_local(channel)
                await asyncio.sleep(1)
