"""Batch queries (SPEC §5) on the dispatcher's side: queue one for the Query Service, serve its task's attempt.

The Query Service checks the statement and calls `submit`, which pins the datasets and inserts the query's task
in one transaction, so a pinned query always has a task and a task always its pins. The task is a task of the
org's system DAG `_queries` and runs like any other: scheduled, dispatched, retried, reaped. Its attempt reads
the pinned Postgres datasets through `input_rows` (workers hold no database credential) and records its Parquet
result with `record_result`; the query's row follows the task's status (a trigger, see migration 0005).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT

from dispatcher.internal.rows import table_of
from dispatcher.internal.service import gate_attempt
from dispatcher.lifecycle.cancel import cancel_task
from dispatcher.notifications import Notifications
from dispatcher.repositories import datasets as datasets_repo
from dispatcher.repositories import queries as repo
from trace_core.contracts.internal import Column, QueryInputRequest, QueryResultRequest, QueryResultResponse
from trace_core.contracts.queries import (
    BATCH_TASK_TIMEOUT_S,
    BatchQueryCancelResponse,
    BatchQueryRequest,
    BatchQueryResponse,
    PinnedVersion,
    QueryCaller,
)
from trace_core.contracts.tasks import TaskStatus
from trace_core.db.pool import Connection, Pool
from trace_core.db.queries import Row
from trace_core.logging import get_logger
from trace_core.naming import SYSTEM_COLUMN_PREFIX
from trace_core.query import DatasetNotFoundError, pin_batch_query, query_by_id
from trace_core.settings import Settings
from trace_core.storage import query_result_prefix

log = get_logger(__name__)

# A query task is retried when its worker dies or its lease runs out, not when its SQL fails.
QUERY_MAX_ATTEMPTS = 3


def _bad_request(detail: str) -> HTTPException:
    return ClientException(detail=detail, status_code=HTTP_400_BAD_REQUEST)


@dataclass(frozen=True, slots=True)
class PinnedRows:
    """A pinned Postgres dataset's user columns (Postgres types) and its rows as CSV chunks."""

    columns: list[Column]
    chunks: AsyncIterator[bytes]


class BatchQueryApi:
    def __init__(self, pool: Pool, settings: Settings, notifications: Notifications) -> None:
        self.pool = pool
        self.settings = settings
        self.notifications = notifications

    async def submit(self, call: BatchQueryRequest) -> BatchQueryResponse:
        """Pin the caller's datasets and queue the query's task, in one transaction; 404 (recording nothing) for a
        dataset that is missing or that the caller may not read."""
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._query_job(conn, call.org_id)
            try:
                pinned = await pin_batch_query(
                    conn,
                    call,
                    sql=call.sql,
                    names=frozenset(call.dataset_names),
                    max_rows=call.max_rows,
                    timeout_s=call.timeout_s,
                    format=call.format.value,
                )
            except DatasetNotFoundError as missing:
                raise NotFoundException(str(missing), extra={"dataset": missing.name}) from None
            task_id = await repo.insert_query_task(conn, call.org_id, job, pinned.query_id)
        self.notifications.publish("trace_tasks")
        log.info("dispatcher.query.queued", query_id=str(pinned.query_id), task_id=str(task_id))
        return BatchQueryResponse(
            query_id=pinned.query_id,
            task_id=task_id,
            pins=[
                PinnedVersion(
                    dataset_name=dataset.dataset_name,
                    dataset_uuid=dataset.dataset_uuid,
                    dataset_version=dataset.dataset_version,
                )
                for dataset in sorted(pinned.datasets, key=lambda dataset: dataset.dataset_name)
            ],
        )

    async def _query_job(self, conn: Connection, org_id: UUID) -> Row:
        """The org's `duckdb_query` job, made with its system DAG on the org's first batch query; its settings
        follow this dispatcher's configuration."""
        settings = {
            "max_concurrency": self.settings.query_batch_concurrency,
            "timeout_s": BATCH_TASK_TIMEOUT_S,
            "max_attempts": QUERY_MAX_ATTEMPTS,
        }
        job = await repo.query_job(conn, org_id)
        if job is None:
            await repo.create_query_dag(conn, org_id, **settings)
            job = await repo.query_job(conn, org_id)
            assert job is not None
        if any(job[name] != value for name, value in settings.items()):
            await repo.set_query_job_settings(conn, job, **settings)
            job |= settings
        return job

    async def cancel(self, query_id: UUID, caller: QueryCaller) -> BatchQueryCancelResponse:
        """Cancel the caller's batch query (an admin: any of the org's): its task, the way `/v1/tasks` cancels."""
        async with self.pool.connection() as conn, conn.transaction():
            query = await query_by_id(conn, caller, query_id)
            if query is None:
                raise NotFoundException(f"no query {query_id} that you may see")
            if query["mode"] != "batch":
                raise ClientException(
                    detail=f"query {query_id} is interactive: it ends with its request", status_code=HTTP_409_CONFLICT
                )
            task_id = await repo.task_of_query(conn, query_id)
            assert task_id is not None  # a batch query is queued with its task
            status = await cancel_task(conn, task_id, caller.org_id)
        if status is TaskStatus.CANCELED:
            self.notifications.publish("trace_tasks")
        return BatchQueryCancelResponse(query_id=query_id, status=status.value, cancel_requested=True)

    async def input_rows(self, call: QueryInputRequest) -> PinnedRows:
        """The user columns and rows of a Postgres dataset the attempt's query pinned, at the pinned version."""
        async with self.pool.connection() as conn, conn.transaction():
            gate = await gate_attempt(conn, call)
            if TaskStatus(gate["task_status"]).is_terminal:
                raise ClientException(
                    detail=f"task {call.task_id} is {gate['task_status']}; it reads no more input",
                    status_code=HTTP_409_CONFLICT,
                )
            pinned = await repo.pinned_input(conn, call.task_id, call.dataset_uuid)
            if pinned is None:
                raise _bad_request(f"dataset_uuid: {call.dataset_uuid} is not a dataset this task's query pinned")
            if pinned["storage"] != "postgres":
                raise _bad_request(
                    f"dataset_uuid: {call.dataset_uuid} is Parquet in the object store; the worker reads it there"
                )
            table = table_of(pinned["storage_location"])
            columns = [
                Column(name=row["name"], type=row["type"])
                for row in await datasets_repo.table_columns(conn, table)
                if not row["name"].startswith(SYSTEM_COLUMN_PREFIX)
            ]
        return PinnedRows(columns, self._copy(table, [column.name for column in columns]))

    async def _copy(self, table: str, columns: list[str]) -> AsyncIterator[bytes]:
        if not columns:  # the version's table does not exist yet: no rows
            return
        async with self.pool.connection() as conn:
            async for chunk in repo.copy_rows(conn, table, columns):
                yield chunk

    async def record_result(self, call: QueryResultRequest) -> QueryResultResponse:
        """Record where the attempt stored its result; the query becomes Completed when the task completes."""
        async with self.pool.connection() as conn, conn.transaction():
            gate = await gate_attempt(conn, call)
            if TaskStatus(gate["task_status"]).is_terminal:
                raise ClientException(
                    detail=f"task {call.task_id} is {gate['task_status']}; it records no more results",
                    status_code=HTTP_409_CONFLICT,
                )
            if gate["query_id"] is None:
                raise _bad_request(f"task {call.task_id} runs no batch query: there is no query to record a result of")
            prefix = query_result_prefix(gate["org_id"], gate["query_id"])
            if not call.location.startswith(prefix + "/"):
                raise _bad_request(f"location: a result of query {gate['query_id']} is stored under {prefix}/")
            query_id = await repo.record_result(
                conn, call.task_id, call.location, call.row_count, call.truncated, call.columns
            )
        assert query_id is not None
        return QueryResultResponse(query_id=query_id)


def columns_header(columns: list[Column]) -> str:
    """The columns of a `query-input` answer, as its `X-Trace-Columns` header."""
    return json.dumps([column.model_dump() for column in columns], separators=(",", ":"))
