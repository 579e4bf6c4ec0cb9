"""Batch queries (SPEC §5): what the Query Service hands the dispatcher, what a `duckdb_query` task receives, and
what its attempt reports back. The limits of both query modes live here, so every part checks the same ones."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field

from trace_core.contracts._base import Contract

MAX_SQL_CHARS = 100_000

# Interactive queries answer in the request: small results, short runs.
INTERACTIVE_MAX_ROWS = 1_000_000
INTERACTIVE_DEFAULT_ROWS = 10_000
INTERACTIVE_MAX_TIMEOUT_S = 300.0
INTERACTIVE_DEFAULT_TIMEOUT_S = 30.0

# Batch queries run as tasks and write Parquet: long runs, whole results (the row cap only bounds a runaway
# cross join's file).
BATCH_MAX_ROWS = 100_000_000
BATCH_MAX_TIMEOUT_S = 6 * 3600.0
BATCH_DEFAULT_TIMEOUT_S = 3600.0
# The task's own timeout covers the longest query plus staging its inputs and storing its result.
BATCH_TASK_TIMEOUT_S = int(BATCH_MAX_TIMEOUT_S) + 1800

# Pages of a stored result.
RESULT_PAGE_MAX_ROWS = 1_000_000
RESULT_PAGE_DEFAULT_ROWS = 10_000


class ResultFormat(StrEnum):
    JSON = "json"
    ARROW = "arrow"
    CSV = "csv"


class QueryPin(Contract):
    """A dataset a query pinned: the version it reads and where that version lives."""

    dataset_name: str
    dataset_uuid: UUID
    dataset_version: UUID
    storage: Literal["s3", "postgres"]
    location: str = Field(description="object-store prefix of the version's Parquet, or the `schema.table` of it")
    registry_schema: dict[str, Any] | None = Field(
        None, description="the registry's `{columns: [{name, type}]}`, to type a version with no data yet"
    )


class BatchQuery(Contract):
    """The query a `duckdb_query` task runs, pinned when it was submitted."""

    query_id: UUID
    sql: str
    max_rows: int = Field(ge=1, le=BATCH_MAX_ROWS)
    timeout_s: float = Field(gt=0, le=BATCH_MAX_TIMEOUT_S)
    datasets: list[QueryPin]


class QueryCaller(Contract):
    """Who a platform component acts for; the Query Service authenticated them."""

    org_id: UUID
    user_id: UUID
    is_admin: bool


class BatchQueryRequest(QueryCaller):
    """Query Service → dispatcher: pin the datasets for the caller and queue the query's task, in one transaction.
    The statement was checked by the Query Service."""

    sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL_CHARS)]
    dataset_names: list[str] = Field(max_length=1_000)
    max_rows: int = Field(ge=1, le=BATCH_MAX_ROWS)
    timeout_s: float = Field(gt=0, le=BATCH_MAX_TIMEOUT_S)
    format: ResultFormat


class PinnedVersion(Contract):
    dataset_name: str
    dataset_uuid: UUID
    dataset_version: UUID


class BatchQueryResponse(Contract):
    query_id: UUID
    task_id: UUID
    pins: list[PinnedVersion]


class BatchQueryCancelResponse(Contract):
    query_id: UUID
    status: str = Field(description="the query's task status after the call")
    cancel_requested: bool


class ResultColumn(Contract):
    name: str
    type: str = Field(description="DuckDB's name of the column's type (`BIGINT`, `DECIMAL(18,3)`…)")
