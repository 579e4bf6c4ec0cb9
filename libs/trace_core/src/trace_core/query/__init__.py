"""SQL over published datasets (SPEC §5): statement checks, the pinned catalog and a locked-down DuckDB engine.

The Query Service is an HTTP shell over this package; the dispatcher pins batch queries with its catalog, and the
`duckdb_query` operator runs them on the same engine.
"""

from trace_core.query.catalog import (
    PinnedDataset,
    PinnedQuery,
    Reader,
    finish_query,
    pin_batch_query,
    pin_datasets,
    query_by_id,
)
from trace_core.query.engine import QueryEngine, QueryResult, WrittenResult
from trace_core.query.errors import (
    DatasetNotFoundError,
    DatasetUnavailableError,
    QueryError,
    QueryRefusedError,
    QuerySqlError,
    QueryTimeoutError,
    ResultUnavailableError,
)
from trace_core.query.statements import CheckedQuery, check_query

__all__ = [
    "CheckedQuery",
    "DatasetNotFoundError",
    "DatasetUnavailableError",
    "PinnedDataset",
    "PinnedQuery",
    "QueryEngine",
    "QueryError",
    "QueryRefusedError",
    "QueryResult",
    "QuerySqlError",
    "QueryTimeoutError",
    "Reader",
    "ResultUnavailableError",
    "WrittenResult",
    "check_query",
    "finish_query",
    "pin_batch_query",
    "pin_datasets",
    "query_by_id",
]
