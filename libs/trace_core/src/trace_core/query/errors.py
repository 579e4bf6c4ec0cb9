"""Why a query did not run or did not finish; each maps to one HTTP status in the Query Service."""

from __future__ import annotations


class QueryError(Exception):
    """A query failed for a reason its author can act on; the message is safe to show."""

    status_code = 400


class QueryRefusedError(QueryError):
    """The statement does something the locked-down engine never allows (a file, DDL, a setting…)."""


class QuerySqlError(QueryError):
    """DuckDB rejected or failed the statement; the message is DuckDB's."""


class DatasetUnavailableError(QueryError):
    """A dataset exists and is readable but its pinned version has nothing to read yet."""


class DatasetNotFoundError(QueryError):
    """No published dataset of this name that the caller may read: a missing and a forbidden one look alike."""

    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"no dataset named {name!r} that you may read")
        self.name = name


class QueryTimeoutError(QueryError):
    """The query ran past its `timeout_s` and was interrupted."""

    status_code = 408


class ResultUnavailableError(QueryError):
    """A batch query's stored result cannot be read any more (removed from the object store)."""

    status_code = 410
