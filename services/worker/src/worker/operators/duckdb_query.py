"""`duckdb_query`: the Query Service's batch operator (SPEC §5, §10).

Its task carries a query pinned when it was submitted. The wrapper stages exactly the pinned versions as Parquet
in this child's working directory, and the query runs on the Query Service's own locked-down engine
(`trace_core.query`), rooted there: the same statement checks, views, lockdown and timeout as an interactive
query, with no object store, Postgres or credential in reach. The result streams into a Parquet file that the
wrapper stores as the attempt's result. An error of the query itself (DuckDB's message, a refusal, the timeout)
fails the task without a retry: another attempt would fail the same way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from pathlib import Path

from trace_core.contracts.operator import QueryResultWritten
from trace_core.contracts.queries import ResultColumn
from trace_core.objectstore import LocalObjectStore
from worker.operators import EventLike, OperatorContext, OperatorError


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    # Imported here, not with the module: every operator child imports the whole registry for its first task, and
    # the engine's imports (~0.3 s) would lengthen every Lambda cold start, which must fit in its first lease.
    from trace_core.query import PinnedDataset, QueryEngine, QueryError

    query = ctx.task.query
    if query is None:
        raise OperatorError(
            "duckdb_query runs the Query Service's batch queries (POST /v1/query with mode batch); "
            "this task has no query",
            retryable=False,
        )
    staged = ctx.query_inputs()
    assert staged.root is not None
    datasets = [
        PinnedDataset(
            dataset_name=pin.dataset_name,
            dataset_uuid=pin.dataset_uuid,
            dataset_version=pin.dataset_version,
            storage=pin.storage,
            storage_location=pin.location,
            schema=pin.registry_schema,
            table_columns=None,
        )
        for pin in staged.datasets
    ]
    target = Path.cwd() / f"result-{uuid.uuid4().hex}.parquet"
    engine = QueryEngine(
        LocalObjectStore(Path(staged.root)),
        database_url=None,
        aws_region="",
        aws_endpoint_url=None,
        concurrency=1,
    )
    try:
        checked = engine.check(query.sql)
        written = asyncio.run(
            engine.run_to_parquet(checked, datasets, target, max_rows=query.max_rows, timeout_s=query.timeout_s)
        )
    except QueryError as error:
        target.unlink(missing_ok=True)
        raise OperatorError(str(error), retryable=False) from None
    finally:
        engine.close()
    ctx.store_query_result(
        QueryResultWritten(
            path=str(target),
            rows=written.row_count,
            truncated=written.truncated,
            columns=[
                ResultColumn(name=name, type=kind)
                for name, kind in zip(written.column_names, written.column_types, strict=True)
            ],
        )
    )
    return None
