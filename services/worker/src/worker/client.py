"""The dispatcher's internal API as the wrapper calls it (service credential on every call)."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import httpx
from pydantic import BaseModel

from trace_core.contracts.internal import (
    Column,
    EmitEventsRequest,
    EmitEventsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    QueryInputRequest,
    QueryResultRequest,
    QueryResultResponse,
    RowsRequest,
    RowsResponse,
    TaskCompleteBatchRequest,
    TaskCompleteBatchResponse,
    TaskCompleteRequest,
    TaskCompleteResponse,
    TaskCompleteResult,
    TaskFetchBatchRequest,
    TaskFetchBatchResponse,
    TaskFetchResult,
    TaskInputRequest,
    TaskInputResponse,
    TaskPollRequest,
    TaskPollResponse,
)


class DispatcherError(RuntimeError):
    """The dispatcher refused a call; `status_code` says how (409: a stale attempt or a finished task)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class DispatcherClient:
    def __init__(self, base_url: str, service_token: str, connections: int = 8, timeout_s: float = 30) -> None:
        # httpx scans every pooled connection on each request: keep the pool as small as the concurrency needs
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {service_token}"},
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: BaseModel, timeout_s: float | None = None) -> bytes:
        response = await self._http.post(
            path,
            content=body.model_dump_json(),
            headers={"Content-Type": "application/json"},
            timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
        )
        return _checked(response)

    async def fetch_many(self, task_ids: list[UUID], worker_id: str) -> list[TaskFetchResult]:
        call = TaskFetchBatchRequest(task_ids=task_ids, worker_id=worker_id)
        return TaskFetchBatchResponse.model_validate_json(await self._post("/internal/task-fetch-batch", call)).results

    async def complete_many(self, calls: list[TaskCompleteRequest]) -> list[TaskCompleteResult]:
        body = await self._post("/internal/task-complete-batch", TaskCompleteBatchRequest(completions=calls))
        return TaskCompleteBatchResponse.model_validate_json(body).results

    async def heartbeat(self, call: HeartbeatRequest) -> HeartbeatResponse:
        return HeartbeatResponse.model_validate_json(await self._post("/internal/heartbeat", call))

    async def emit(self, call: EmitEventsRequest) -> EmitEventsResponse:
        return EmitEventsResponse.model_validate_json(await self._post("/internal/events", call))

    async def complete(self, call: TaskCompleteRequest) -> TaskCompleteResponse:
        return TaskCompleteResponse.model_validate_json(await self._post("/internal/task-complete", call))

    async def write_rows(self, call: RowsRequest) -> RowsResponse:
        return RowsResponse.model_validate_json(await self._post("/internal/rows", call))

    async def task_input(self, call: TaskInputRequest) -> TaskInputResponse:
        return TaskInputResponse.model_validate_json(await self._post("/internal/task-input", call))

    async def query_input(self, call: QueryInputRequest, target: Path) -> list[Column]:
        """Stream a pinned Postgres dataset's rows (CSV) into the file `target`; returns its columns."""
        async with self._http.stream(
            "POST",
            "/internal/query-input",
            content=call.model_dump_json(),
            headers={"Content-Type": "application/json"},
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _checked(response)
            columns = [Column.model_validate(column) for column in json.loads(response.headers["x-trace-columns"])]
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        return columns

    async def record_query_result(self, call: QueryResultRequest) -> QueryResultResponse:
        return QueryResultResponse.model_validate_json(await self._post("/internal/query-result", call))

    async def poll(self, call: TaskPollRequest) -> TaskPollResponse:
        body = await self._post("/internal/task-poll", call, timeout_s=call.wait_s + 10)
        return TaskPollResponse.model_validate_json(body)


def _checked(response: httpx.Response) -> bytes:
    if response.status_code >= 400:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text
        raise DispatcherError(response.status_code, detail)
    return response.content
