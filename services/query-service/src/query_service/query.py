"""`POST /v1/query`, `GET /v1/query/{id}`, `GET /v1/query/{id}/result` and `POST /v1/query/{id}/cancel`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from query_service.batch import STATUS_NAMES, BatchQueries, ResultPage
from query_service.formats import ARROW_STREAM, CSV, arrow_stream, csv_text, json_columns, json_rows
from query_service.service import QueryService
from trace_core.auth.principal import Principal
from trace_core.contracts.queries import (
    BATCH_DEFAULT_TIMEOUT_S,
    BATCH_MAX_ROWS,
    BATCH_MAX_TIMEOUT_S,
    INTERACTIVE_DEFAULT_ROWS,
    INTERACTIVE_DEFAULT_TIMEOUT_S,
    INTERACTIVE_MAX_ROWS,
    INTERACTIVE_MAX_TIMEOUT_S,
    MAX_SQL_CHARS,
    RESULT_PAGE_DEFAULT_ROWS,
    RESULT_PAGE_MAX_ROWS,
    BatchQueryCancelResponse,
    ResultColumn,
    ResultFormat,
)
from trace_core.query import QueryResult

Req = Request[Principal, None, State]


class QueryRequest(BaseModel):
    # `mode` first: the limits of `max_rows` and `timeout_s` depend on it
    mode: Literal["interactive", "batch"] = Field(
        "interactive",
        description="interactive: the result is the answer. batch: the query runs as a task and writes a Parquet "
        "result; the answer (202) names the query, `GET /v1/query/{id}` follows it.",
    )
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT statement over dataset names.")
    max_rows: int | None = Field(
        None,
        ge=1,
        le=BATCH_MAX_ROWS,
        description=f"Rows in the result at most; more sets `truncated`. Interactive: up to {INTERACTIVE_MAX_ROWS:,} "
        f"(default {INTERACTIVE_DEFAULT_ROWS:,}); batch: up to {BATCH_MAX_ROWS:,} (the default).",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=BATCH_MAX_TIMEOUT_S,
        description=f"The query is interrupted after this long. Interactive: up to {INTERACTIVE_MAX_TIMEOUT_S:g} s "
        f"(default {INTERACTIVE_DEFAULT_TIMEOUT_S:g}, 408 when exceeded); batch: up to {BATCH_MAX_TIMEOUT_S:g} s "
        f"(default {BATCH_DEFAULT_TIMEOUT_S:g}; the query fails).",
    )
    format: ResultFormat = Field(
        ResultFormat.JSON, description="json, arrow or csv: the answer's (batch: the result's default) format."
    )

    @field_validator("max_rows")
    @classmethod
    def _interactive_rows(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("mode") == "interactive" and value > INTERACTIVE_MAX_ROWS:
            raise ValueError(
                f"an interactive query returns at most {INTERACTIVE_MAX_ROWS:,} rows; use mode batch for more"
            )
        return value

    @field_validator("timeout_s")
    @classmethod
    def _interactive_timeout(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("mode") == "interactive" and value > INTERACTIVE_MAX_TIMEOUT_S:
            raise ValueError(
                f"an interactive query runs at most {INTERACTIVE_MAX_TIMEOUT_S:g} s; use mode batch for longer"
            )
        return value

    def limits(self) -> tuple[int, float]:
        """`max_rows` and `timeout_s`, with the mode's defaults."""
        if self.mode == "batch":
            return self.max_rows or BATCH_MAX_ROWS, self.timeout_s or BATCH_DEFAULT_TIMEOUT_S
        return self.max_rows or INTERACTIVE_DEFAULT_ROWS, self.timeout_s or INTERACTIVE_DEFAULT_TIMEOUT_S


class BatchQueued(BaseModel):
    query_id: UUID
    mode: Literal["batch"] = "batch"
    status: Literal["queued"] = "queued"
    dataset_versions: dict[str, UUID]
    status_url: str
    result_url: str


class PinOut(BaseModel):
    dataset_name: str | None
    dataset_uuid: UUID
    dataset_version: UUID


class QueryStatus(BaseModel):
    query_id: UUID
    mode: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    sql: str
    format: str | None
    max_rows: int | None
    timeout_s: float | None
    row_count: int | None = Field(description="rows of the result (a batch query's: once it succeeded)")
    truncated: bool | None
    error: str | None = Field(description="why it failed (DuckDB's message for bad SQL); a retried task's last error")
    columns: list[ResultColumn] | None = Field(description="a succeeded batch query's result columns")
    result_url: str | None = Field(description="a succeeded batch query's result: json, arrow or csv, in pages")
    task_id: UUID | None = Field(description="a batch query's task (`/v1/tasks/{id}` for admins)")
    attempts: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    pins: list[PinOut]


def _query_id(value: str) -> UUID:
    """The path's query id; a malformed one is a 400 naming the field (a `uuid` route type would answer 404)."""
    try:
        return UUID(value)
    except ValueError:
        raise ClientException(
            detail=f"query_id: {value[:100]!r} is not a query id (a UUID)",
            status_code=400,
            extra=[{"key": "query_id", "message": "not a UUID", "source": "path"}],
        ) from None


def _status_url(query_id: UUID) -> str:
    return f"/v1/query/{query_id}"


def _status(row: dict[str, Any]) -> QueryStatus:
    status = STATUS_NAMES[row["status"]]
    succeeded_batch = row["mode"] == "batch" and status == "succeeded"
    return QueryStatus.model_validate(
        {
            **row,
            "status": status,
            "row_count": row["row_count"] if row["mode"] == "interactive" or succeeded_batch else None,
            "truncated": row["truncated"] if succeeded_batch else None,
            "columns": row["result_columns"] if succeeded_batch else None,
            "result_url": f"{_status_url(row['query_id'])}/result" if succeeded_batch else None,
        }
    )


def _rows_response(
    result: QueryResult, format: ResultFormat, headers: dict[str, str], body: dict[str, Any]
) -> Response[Any]:
    """`result` as JSON (`body` plus columns and rows), an Arrow IPC stream or CSV."""
    if format is ResultFormat.ARROW:
        return Response(arrow_stream(result.table), media_type=ARROW_STREAM, headers=headers)
    if format is ResultFormat.CSV:
        return Response(csv_text(result.table), media_type=CSV, headers=headers)
    return Response(
        {
            **body,
            "columns": json_columns(result),
            "rows": json_rows(result.table),
            "row_count": result.table.num_rows,
            "truncated": result.truncated,
        },
        headers=headers,
    )


class QueryController(Controller):
    path = "/v1/query"
    tags = ["query"]

    @post(
        "",
        status_code=200,
        summary="Run one SELECT over published datasets",
        description="Interactive (default): `format` json answers columns and rows; arrow an Arrow IPC stream; csv a "
        "header and rows. Arrow and CSV carry the query id, row count and truncation in `X-Trace-*` headers. "
        "`mode: batch` answers 202 with the query id at once; the query runs as a task and "
        "`GET /v1/query/{id}` follows it.",
        responses={202: ResponseSpec(data_container=BatchQueued, description="a batch query, pinned and queued")},
    )
    async def run(self, request: Req, data: JSONBody[QueryRequest], state: State) -> Response[Any]:
        max_rows, timeout_s = data.limits()
        if data.mode == "batch":
            batch: BatchQueries = state.batch_queries
            queued = await batch.submit(
                request.user, data.sql, max_rows=max_rows, timeout_s=timeout_s, format=data.format
            )
            status_url = _status_url(queued.query_id)
            answer = BatchQueued(
                query_id=queued.query_id,
                dataset_versions={pin.dataset_name: pin.dataset_version for pin in queued.pins},
                status_url=status_url,
                result_url=f"{status_url}/result",
            )
            return Response(
                answer.model_dump(mode="json"),
                status_code=202,
                headers={"Location": status_url, "X-Trace-Query-Id": str(queued.query_id)},
            )
        service: QueryService = state.query_service
        found = await service.run_interactive(
            request.user, data.sql, max_rows=max_rows, timeout_s=timeout_s, format=data.format.value
        )
        headers = {
            "X-Trace-Query-Id": str(found.query_id),
            "X-Trace-Row-Count": str(found.result.table.num_rows),
            "X-Trace-Truncated": str(found.result.truncated).lower(),
        }
        versions = {dataset.dataset_name: str(dataset.dataset_version) for dataset in found.datasets}
        return _rows_response(
            found.result, data.format, headers, {"query_id": str(found.query_id), "dataset_versions": versions}
        )

    @get("/{query_id:str}", summary="A query's status, pins and (a succeeded batch query's) result link")
    async def status(self, request: Req, query_id: FromPath[str], state: State) -> QueryStatus:
        batch: BatchQueries = state.batch_queries
        return _status(await batch.query(request.user, _query_id(query_id)))

    @get(
        "/{query_id:str}/result",
        summary="A page of a succeeded batch query's result",
        description="Rows `offset` to `offset + limit - 1` in the result's order, as json (with `next_offset`, null "
        "on the last page), an Arrow IPC stream or CSV (a header line on every page); `X-Trace-Next-Offset` and "
        "`X-Trace-Total-Rows` in every format. 409 while the query is queued or running, or when it failed.",
    )
    async def result(
        self,
        request: Req,
        query_id: FromPath[str],
        state: State,
        format: Annotated[ResultFormat | None, QueryParameter(description="default: the query's `format`")] = None,
        offset: Annotated[int, QueryParameter(ge=0)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=RESULT_PAGE_MAX_ROWS)] = RESULT_PAGE_DEFAULT_ROWS,
    ) -> Response[Any]:
        batch: BatchQueries = state.batch_queries
        page: ResultPage = await batch.page(request.user, _query_id(query_id), offset=offset, limit=limit)
        next_offset = page.next_offset
        headers = {
            "X-Trace-Query-Id": str(page.query["query_id"]),
            "X-Trace-Row-Count": str(page.result.table.num_rows),
            "X-Trace-Total-Rows": str(page.query["row_count"]),
            "X-Trace-Offset": str(offset),
            "X-Trace-Next-Offset": "" if next_offset is None else str(next_offset),
            "X-Trace-Truncated": str(page.result.truncated).lower(),
        }
        versions = {pin["dataset_name"]: pin["dataset_version"] for pin in page.query["pins"]}
        body = {
            "query_id": str(page.query["query_id"]),
            "total_rows": page.query["row_count"],
            "offset": offset,
            "next_offset": next_offset,
            "dataset_versions": versions,
        }
        return _rows_response(page.result, format or ResultFormat(page.query["format"]), headers, body)

    @post("/{query_id:str}/cancel", status_code=200, summary="Cancel a queued or running batch query")
    async def cancel(self, request: Req, query_id: FromPath[str], state: State) -> BatchQueryCancelResponse:
        batch: BatchQueries = state.batch_queries
        return await batch.cancel(request.user, _query_id(query_id))
