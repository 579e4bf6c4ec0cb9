"""`/internal/*`: the worker contract over HTTP, for platform components holding the service credential."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream

from dispatcher.internal.operator_state import OperatorStateApi
from dispatcher.internal.queries import BatchQueryApi, columns_header
from dispatcher.internal.rows import RowsApi
from dispatcher.internal.service import WorkerApi
from trace_core.auth.litestar import require_service_credential
from trace_core.contracts.internal import (
    EmitEventsRequest,
    EmitEventsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    OperatorState,
    OperatorStateReadRequest,
    OperatorStateWriteRequest,
    OperatorStateWriteResponse,
    QueryInputRequest,
    QueryResultRequest,
    QueryResultResponse,
    RowsRequest,
    RowsResponse,
    TaskCanceled,
    TaskCompleteBatchRequest,
    TaskCompleteBatchResponse,
    TaskCompleteRequest,
    TaskCompleteResponse,
    TaskFetchBatchRequest,
    TaskFetchBatchResponse,
    TaskInputRequest,
    TaskInputResponse,
    TaskPollRequest,
    TaskPollResponse,
    TaskReleaseRequest,
    TaskReleaseResponse,
)
from trace_core.contracts.queries import BatchQueryCancelResponse, BatchQueryRequest, BatchQueryResponse, QueryCaller
from trace_core.contracts.tasks import TaskPayload


class InternalController(Controller):
    path = "/internal"
    guards = [require_service_credential]
    tags = ["internal"]

    @get("/task-fetch", summary="Start a new attempt of a dispatched task (or learn it was canceled)")
    async def task_fetch(
        self,
        state: State,
        task_id: FromQuery[UUID],
        worker_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> TaskPayload | TaskCanceled:
        api: WorkerApi = state.worker_api
        return await api.fetch(task_id, worker_id)

    @post("/heartbeat", status_code=200, summary="Extend the lease; answers canceled when the task was canceled")
    async def heartbeat(self, state: State, data: JSONBody[HeartbeatRequest]) -> HeartbeatResponse:
        api: WorkerApi = state.worker_api
        return await api.heartbeat(data)

    @post("/events", status_code=200, summary="Emit events mid-task (deduplicated)")
    async def events(self, state: State, data: JSONBody[EmitEventsRequest]) -> EmitEventsResponse:
        api: WorkerApi = state.worker_api
        return await api.emit(data)

    @post("/task-complete", status_code=200, summary="Finish an attempt, with its final events, atomically")
    async def task_complete(self, state: State, data: JSONBody[TaskCompleteRequest]) -> TaskCompleteResponse:
        api: WorkerApi = state.worker_api
        return await api.complete(data)

    @post("/task-fetch-batch", status_code=200, summary="task-fetch for many dispatched tasks in one call")
    async def task_fetch_batch(self, state: State, data: JSONBody[TaskFetchBatchRequest]) -> TaskFetchBatchResponse:
        api: WorkerApi = state.worker_api
        return await api.fetch_many(data)

    @post("/task-complete-batch", status_code=200, summary="task-complete for many attempts in one call")
    async def task_complete_batch(
        self, state: State, data: JSONBody[TaskCompleteBatchRequest]
    ) -> TaskCompleteBatchResponse:
        api: WorkerApi = state.worker_api
        return await api.complete_many(data)

    @post("/task-release", status_code=200, summary="Dispatched task ids a stopping worker did not start: requeue")
    async def task_release(self, state: State, data: JSONBody[TaskReleaseRequest]) -> TaskReleaseResponse:
        api: WorkerApi = state.worker_api
        return await api.release(data)

    @post("/task-poll", status_code=200, summary="Embedded transport: the next dispatched task ids of a runtime")
    async def task_poll(self, state: State, data: JSONBody[TaskPollRequest]) -> TaskPollResponse:
        api: WorkerApi = state.worker_api
        return await api.poll(data)

    @post("/rows", status_code=200, summary="Rows of a write_mode: direct Postgres output, for one scope")
    async def rows(self, state: State, data: JSONBody[RowsRequest]) -> RowsResponse:
        api: RowsApi = state.rows_api
        return await api.write(data)

    @post("/task-input", status_code=200, summary="Where the task's input scope lives: a Parquet key, or its rows")
    async def task_input(self, state: State, data: JSONBody[TaskInputRequest]) -> TaskInputResponse:
        api: RowsApi = state.rows_api
        return await api.task_input(data)

    @post("/operator-state/read", status_code=200, summary="The operator state of the task's job, with its revision")
    async def operator_state_read(self, state: State, data: JSONBody[OperatorStateReadRequest]) -> OperatorState:
        api: OperatorStateApi = state.operator_state_api
        return await api.read(data)

    @put(
        "/operator-state",
        status_code=200,
        summary="Compare-and-swap the job's operator state, storing its events in the same transaction",
    )
    async def operator_state_write(
        self, state: State, data: JSONBody[OperatorStateWriteRequest]
    ) -> OperatorStateWriteResponse:
        api: OperatorStateApi = state.operator_state_api
        return await api.write(data)

    @post("/batch-queries", status_code=201, summary="Query Service: pin a batch query's datasets and queue its task")
    async def submit_batch_query(self, state: State, data: JSONBody[BatchQueryRequest]) -> BatchQueryResponse:
        api: BatchQueryApi = state.batch_query_api
        return await api.submit(data)

    @post("/batch-queries/{query_id:uuid}/cancel", status_code=200, summary="Query Service: cancel a batch query")
    async def cancel_batch_query(
        self, state: State, query_id: FromPath[UUID], data: JSONBody[QueryCaller]
    ) -> BatchQueryCancelResponse:
        api: BatchQueryApi = state.batch_query_api
        return await api.cancel(query_id, data)

    @post(
        "/query-input",
        status_code=200,
        summary="The rows of a Postgres dataset the task's batch query pinned, as CSV",
        description="`X-Trace-Columns` lists the columns (JSON `[{name, type}]`, Postgres types), in the CSV's "
        "order; the CSV has no header. NULL is an unquoted empty field, an empty string a quoted one.",
    )
    async def query_input(self, state: State, data: JSONBody[QueryInputRequest]) -> Stream:
        api: BatchQueryApi = state.batch_query_api
        rows = await api.input_rows(data)
        return Stream(rows.chunks, media_type="text/csv", headers={"X-Trace-Columns": columns_header(rows.columns)})

    @post("/query-result", status_code=200, summary="Record where a batch query's attempt stored its result")
    async def query_result(self, state: State, data: JSONBody[QueryResultRequest]) -> QueryResultResponse:
        api: BatchQueryApi = state.batch_query_api
        return await api.record_result(data)
