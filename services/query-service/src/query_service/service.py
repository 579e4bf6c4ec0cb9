"""One interactive query from request to result: check, pin, run, record the outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

from query_service.dispatcher import DispatcherUnavailableError
from query_service.metrics import Metrics
from trace_core.auth.principal import Principal
from trace_core.db.pool import Pool
from trace_core.logging import get_logger
from trace_core.query import (
    DatasetNotFoundError,
    DatasetUnavailableError,
    PinnedDataset,
    QueryEngine,
    QueryError,
    QueryRefusedError,
    QueryResult,
    QueryTimeoutError,
    finish_query,
    pin_datasets,
)

log = get_logger(__name__)

_OUTCOMES: dict[type[QueryError], str] = {
    QueryRefusedError: "refused",
    DatasetNotFoundError: "not_found",
    DatasetUnavailableError: "unavailable",
    QueryTimeoutError: "timeout",
    DispatcherUnavailableError: "failed",
}


def outcome_of(error: QueryError) -> str:
    """The metrics outcome of a query that ended with `error`."""
    return _OUTCOMES.get(type(error), "sql_error")


@dataclass(frozen=True, slots=True)
class Answer:
    query_id: UUID
    datasets: tuple[PinnedDataset, ...]
    result: QueryResult


class QueryService:
    def __init__(self, pool: Pool, engine: QueryEngine, metrics: Metrics) -> None:
        self._pool = pool
        self._engine = engine
        self._metrics = metrics

    async def run_interactive(
        self, principal: Principal, sql: str, *, max_rows: int, timeout_s: float, format: str = "json"
    ) -> Answer:
        """Check the statement, pin its datasets, run it within the limits; `QueryError` says why not."""
        started = time.perf_counter()
        try:
            answer = await self._run(principal, sql, max_rows=max_rows, timeout_s=timeout_s, format=format)
        except QueryError as error:
            outcome = outcome_of(error)
            self._metrics.observe(outcome, time.perf_counter() - started)
            log.info("query_service.query.failed", outcome=outcome, user=principal.user_name, error=str(error))
            raise
        except BaseException:
            self._metrics.observe("failed", time.perf_counter() - started)
            raise
        outcome = "truncated" if answer.result.truncated else "completed"
        self._metrics.observe(outcome, time.perf_counter() - started)
        return answer

    async def _run(self, principal: Principal, sql: str, *, max_rows: int, timeout_s: float, format: str) -> Answer:
        checked = self._engine.check(sql)
        async with self._pool.connection() as conn:
            pinned = await pin_datasets(
                conn,
                principal,
                sql=sql,
                names=checked.dataset_names,
                max_rows=max_rows,
                timeout_s=timeout_s,
                format=format,
            )
        try:
            result = await self._engine.run(checked, pinned.datasets, max_rows=max_rows, timeout_s=timeout_s)
        except BaseException as error:
            async with self._pool.connection() as conn:
                await finish_query(conn, pinned.query_id, "Failed", error=str(error) or type(error).__name__)
            raise
        async with self._pool.connection() as conn:
            await finish_query(conn, pinned.query_id, "Completed", row_count=result.table.num_rows)
        return Answer(pinned.query_id, pinned.datasets, result)
