"""`/v1/tasks`: list (cursor pagination), inspect with attempts, cancel."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter

from dispatcher.lifecycle.cancel import cancel_task
from dispatcher.notifications import Notifications
from dispatcher.repositories import tasks as repo
from trace_core.auth.litestar import require_role
from trace_core.auth.principal import Principal
from trace_core.contracts.tasks import TaskStatus
from trace_core.db.pool import Pool

Req = Request[Principal, None, State]


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["created_at"].isoformat(), str(row["task_id"])]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, task_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), UUID(task_id)
    except (ValueError, TypeError) as error:
        raise ClientException(detail=f"cursor: not a cursor this API returned ({error})", status_code=400) from None


class TaskController(Controller):
    path = "/v1/tasks"
    tags = ["tasks"]

    @get("", guards=[require_role("reader")], summary="Tasks, newest first; `next_cursor` pages on")
    async def list_tasks(
        self,
        request: Req,
        state: State,
        dag: FromQuery[str | None] = None,
        job: FromQuery[str | None] = None,
        status: FromQuery[TaskStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        after_created, after_id = _decode_cursor(cursor) if cursor else (None, None)
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            rows = await repo.list_tasks(
                conn,
                org_id=request.user.org_id,
                is_admin=request.user.is_admin,
                dag=dag,
                job=job,
                status=status.value if status else None,
                after_created=after_created,
                after_id=after_id,
                limit=limit + 1,
            )
        page = rows[:limit]
        return {"tasks": page, "next_cursor": _encode_cursor(page[-1]) if len(rows) > limit else None}

    @get("/{task_id:uuid}", guards=[require_role("reader")], summary="A task with its attempts and errors")
    async def get_task(self, request: Req, state: State, task_id: FromPath[UUID]) -> dict[str, Any]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            row = await repo.task_detail(conn, request.user.org_id, task_id, request.user.is_admin)
        if row is None:
            raise NotFoundException(f"no task {task_id}")
        return row

    @post("/{task_id:uuid}/cancel", guards=[require_role("writer")], status_code=200, summary="Cancel a task")
    async def cancel(self, request: Req, state: State, task_id: FromPath[UUID]) -> dict[str, Any]:
        """Queued and dispatched tasks are canceled at once; a running one is told at its next heartbeat."""
        pool: Pool = state.db_pool
        async with pool.connection() as conn, conn.transaction():
            status = await cancel_task(conn, task_id, request.user.org_id)
        if status is TaskStatus.CANCELED:
            notifications: Notifications = state.notifications
            notifications.publish("trace_tasks")
        return {"task_id": task_id, "status": status.value, "cancel_requested": True}
