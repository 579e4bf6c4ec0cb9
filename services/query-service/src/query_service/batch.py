"""Batch queries (`mode: batch`): checked here, pinned and queued by the dispatcher as a task of the
`duckdb_query` operator, read back from their Parquet result in pages.

The statement is checked by the same engine as an interactive one, so a refused statement is a 400 before any
task exists; the dispatcher pins with the same catalog and read rule (a missing or forbidden dataset is the same
404) and inserts the task in the same transaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from query_service.dispatcher import DispatcherClient, QueryConflictError, QueryNotFoundError
from query_service.metrics import Metrics
from query_service.service import outcome_of
from trace_core.auth.principal import Principal
from trace_core.contracts.queries import (
    BatchQueryCancelResponse,
    BatchQueryRequest,
    BatchQueryResponse,
    QueryCaller,
    ResultFormat,
)
from trace_core.db.pool import Pool
from trace_core.logging import get_logger
from trace_core.query import QueryEngine, QueryError, QueryResult, query_by_id

log = get_logger(__name__)

# The queries table's statuses, as the API names them.
STATUS_NAMES = {
    "Queued": "queued",
    "Running": "running",
    "Completed": "succeeded",
    "Failed": "failed",
    "Canceled": "canceled",
}


@dataclass(frozen=True, slots=True)
class ResultPage:
    query: dict[str, Any]
    """The query's row (`query_by_id`)."""
    result: QueryResult
    offset: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.result.table.num_rows
        return end if end < int(self.query["row_count"]) else None


def _caller(principal: Principal) -> QueryCaller:
    return QueryCaller(org_id=principal.org_id, user_id=principal.user_id, is_admin=principal.is_admin)


class BatchQueries:
    def __init__(self, pool: Pool, engine: QueryEngine, dispatcher: DispatcherClient, metrics: Metrics) -> None:
        self._pool = pool
        self._engine = engine
        self._dispatcher = dispatcher
        self._metrics = metrics

    async def submit(
        self, principal: Principal, sql: str, *, max_rows: int, timeout_s: float, format: ResultFormat
    ) -> BatchQueryResponse:
        """Check the statement, then have the dispatcher pin its datasets and queue its task."""
        started = time.perf_counter()
        try:
            checked = self._engine.check(sql)
            answer = await self._dispatcher.submit(
                BatchQueryRequest(
                    **_caller(principal).model_dump(),
                    sql=sql,
                    dataset_names=sorted(checked.dataset_names),
                    max_rows=max_rows,
                    timeout_s=timeout_s,
                    format=format,
                )
            )
        except QueryError as error:
            outcome = outcome_of(error)
            self._metrics.observe(outcome, time.perf_counter() - started)
            log.info("query_service.batch.refused", outcome=outcome, user=principal.user_name, error=str(error))
            raise
        self._metrics.observe("queued", time.perf_counter() - started)
        log.info("query_service.batch.queued", query_id=str(answer.query_id), user=principal.user_name)
        return answer

    async def query(self, principal: Principal, query_id: UUID) -> dict[str, Any]:
        """The query's row, if the caller may see it (its own; an admin any of the org's): else 404."""
        async with self._pool.connection() as conn:
            row = await query_by_id(conn, principal, query_id)
        if row is None:
            raise QueryNotFoundError(f"no query {query_id} that you may see")
        return row

    async def page(self, principal: Principal, query_id: UUID, *, offset: int, limit: int) -> ResultPage:
        """Rows `offset …` of a succeeded batch query's result, in the result's order."""
        row = await self.query(principal, query_id)
        if row["mode"] != "batch":
            raise QueryConflictError(
                f"query {query_id} is interactive: its result was the answer to its request and is not kept"
            )
        status = STATUS_NAMES[row["status"]]
        if status != "succeeded":
            reason = f": {row['error']}" if row["error"] else ""
            ready = "its result is not ready yet" if status in {"queued", "running"} else "it has no result"
            raise QueryConflictError(f"query {query_id} is {status}{reason}; {ready}")
        table = await asyncio.to_thread(self._engine.read_parquet_page, row["result_location"], offset, limit)
        types = tuple(column["type"] for column in row["result_columns"])
        return ResultPage(row, QueryResult(table, types, bool(row["truncated"])), offset)

    async def cancel(self, principal: Principal, query_id: UUID) -> BatchQueryCancelResponse:
        row = await self.query(principal, query_id)
        if row["mode"] != "batch":
            raise QueryConflictError(f"query {query_id} is interactive: it ends with its request")
        status = STATUS_NAMES[row["status"]]
        if status not in {"queued", "running"}:
            raise QueryConflictError(f"query {query_id} is already {status}")
        return await self._dispatcher.cancel(query_id, _caller(principal))
