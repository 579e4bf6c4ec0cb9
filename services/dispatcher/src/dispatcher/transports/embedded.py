"""The embedded transport: dispatched ids wait in `transport_queue`; workers take them with `task-poll`."""

from __future__ import annotations

from uuid import UUID


class EmbeddedTransport:
    in_database = True

    async def send(self, runtime: str, task_ids: list[UUID]) -> list[UUID]:
        return []  # enqueued by the scheduler's statement itself

    async def close(self) -> None:
        return None
