"""Canceling a task: queued and dispatched tasks end at once; a running one is told at its next heartbeat."""

from __future__ import annotations

from uuid import UUID

from litestar.exceptions import ClientException, NotFoundException

from dispatcher.repositories import tasks as repo
from trace_core.contracts.tasks import TaskStatus
from trace_core.db.pool import Connection


async def cancel_task(conn: Connection, task_id: UUID, org_id: UUID) -> TaskStatus:
    """Cancel a task of `org_id` (call in a transaction); its status after the call: Canceled, or Running with the
    cancel requested. 404 for a task of another org, 409 for a finished one."""
    row = await repo.request_cancel(conn, task_id)
    if row is None or row["org_id"] != org_id:
        raise NotFoundException(f"no task {task_id}")
    status = TaskStatus(row["status"])
    if status.is_terminal:
        raise ClientException(detail=f"task {task_id} is already {status.value}", status_code=409)
    if status is TaskStatus.RUNNING:
        await repo.mark_cancel_requested(conn, task_id)
        return status
    await repo.cancel_tasks(conn, [task_id])
    return TaskStatus.CANCELED
