"""`POST /v1/query` and `GET /v1/query/{id}`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, JSONBody
from pydantic import BaseModel, Field

from query_service.formats import ARROW_STREAM, CSV, arrow_stream, csv_text, json_columns, json_rows
from query_service.service import Answer, QueryService
from trace_core.auth.principal import Principal
from trace_core.db.pool import Pool
from trace_core.query import query_by_id


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=100_000, description="One SELECT statement over dataset names.")
    max_rows: int = Field(10_000, ge=1, le=1_000_000, description="Rows returned at most; more sets `truncated`.")
    timeout_s: float = Field(30, gt=0, le=300, description="The query is interrupted after this long (408).")
    format: Literal["json", "arrow", "csv"] = "json"
    mode: Literal["interactive", "batch"] = "interactive"


class PinOut(BaseModel):
    dataset_name: str | None
    dataset_uuid: UUID
    dataset_version: UUID


class QueryStatus(BaseModel):
    query_id: UUID
    mode: str
    status: str
    sql: str
    row_count: int | None
    error: str | None
    result_location: str | None
    created_at: datetime
    finished_at: datetime | None
    pins: list[PinOut]


def _pins(answer: Answer) -> dict[str, str]:
    return {dataset.dataset_name: str(dataset.dataset_version) for dataset in answer.datasets}


class QueryController(Controller):
    path = "/v1/query"
    tags = ["query"]

    @post(
        "",
        status_code=200,
        summary="Run one SELECT over published datasets",
        description="`format` json (default) answers columns and rows; arrow an Arrow IPC stream; csv a header "
        "and rows. Arrow and CSV carry the query id, row count and truncation in `X-Trace-*` headers.",
    )
    async def run(
        self, request: Request[Principal, None, State], data: JSONBody[QueryRequest], state: State
    ) -> Response[Any]:
        if data.mode == "batch":
            raise HTTPException(status_code=400, detail="batch mode is not available yet: use mode 'interactive'")
        service: QueryService = state.query_service
        answer = await service.run_interactive(request.user, data.sql, max_rows=data.max_rows, timeout_s=data.timeout_s)
        result = answer.result
        headers = {
            "X-Trace-Query-Id": str(answer.query_id),
            "X-Trace-Row-Count": str(result.table.num_rows),
            "X-Trace-Truncated": str(result.truncated).lower(),
        }
        if data.format == "arrow":
            return Response(arrow_stream(result.table), media_type=ARROW_STREAM, headers=headers)
        if data.format == "csv":
            return Response(csv_text(result.table), media_type=CSV, headers=headers)
        body = {
            "query_id": str(answer.query_id),
            "columns": json_columns(result),
            "rows": json_rows(result.table),
            "row_count": result.table.num_rows,
            "truncated": result.truncated,
            "dataset_versions": _pins(answer),
        }
        return Response(body, headers=headers)

    @get("/{query_id:uuid}", summary="A query's status, pins and (batch) result location")
    async def status(
        self, request: Request[Principal, None, State], query_id: FromPath[UUID], state: State
    ) -> QueryStatus:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            row = await query_by_id(conn, request.user, query_id)
        if row is None:
            raise NotFoundException(f"no query {query_id} that you may see")
        return QueryStatus.model_validate(row)
