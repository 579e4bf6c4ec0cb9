"""How dispatched task ids reach workers. Postgres stays the queue; a transport only carries notifications."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID


class Transport(Protocol):
    # True: the scheduler's own statement enqueues ids (in Postgres) in the same transaction as dispatching.
    in_database: bool

    async def send(self, runtime: str, task_ids: list[UUID]) -> list[UUID]:
        """Hand `task_ids` to the transport; returns the ids it could not take (they go back to the queue)."""
        ...

    async def close(self) -> None: ...
