"""A locked-down DuckDB that runs one checked SELECT over the pinned versions of its datasets.

One DuckDB database per engine holds what is expensive to set up (extensions, secrets, the read-only attached
Postgres, Parquet metadata), configured once and then locked: no file or URL outside the object store root, no
ATTACH, COPY TO, INSTALL or LOAD, no configuration change. Each query runs on its own connection (a cursor)
whose catalog is that query's temporary views, one per pinned dataset, dropped with the connection, so no
query sees another's. `statements.check_query` has refused everything but a SELECT over dataset names
before a query gets here.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg.conninfo import conninfo_to_dict

from trace_core.naming import DATA_SCHEMA, SYSTEM_COLUMN_PREFIX
from trace_core.objectstore import ObjectStore
from trace_core.query.catalog import PinnedDataset
from trace_core.query.errors import (
    DatasetUnavailableError,
    QueryRefusedError,
    QuerySqlError,
    QueryTimeoutError,
    ResultUnavailableError,
)
from trace_core.query.statements import CheckedQuery, check_query

# The attached Postgres database; user SQL can never name it (qualified names are refused).
POSTGRES_CATALOG = "trace_pg"
_TABLE_LOCATION = re.compile(rf"^{DATA_SCHEMA}\.(ds_[a-z0-9_]+)$")
# A column type of a registry schema, e.g. `BIGINT`, `DECIMAL(38, 0)`, `VARCHAR[]`: nothing else reaches SQL.
_COLUMN_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\[\])*$")
# Postgres type names of registry schemas that DuckDB spells differently.
_DUCKDB_TYPES = {"jsonb": "JSON"}
_BATCH_ROWS = 65_536
_T = TypeVar("_T")
_INTERRUPT_RETRY_S = 0.05


@dataclass(frozen=True, slots=True)
class QueryResult:
    table: pa.Table
    column_types: tuple[str, ...]
    """DuckDB's name of each column's type (`BIGINT`, `DECIMAL(18,3)`…)."""
    truncated: bool
    """More rows than `max_rows` existed; `table` holds the first `max_rows`."""


@dataclass(frozen=True, slots=True)
class WrittenResult:
    """A result written to a Parquet file rather than held in memory (batch queries)."""

    row_count: int
    column_names: tuple[str, ...]
    column_types: tuple[str, ...]
    truncated: bool


def extension_file(name: str) -> Path:
    """The extension binary shipped by the `duckdb-extension-<name>` package for this DuckDB version."""
    package = resources.files(importlib.import_module(f"duckdb_extension_{name}"))
    return Path(str(package)) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Interrupt:
    """Stops an `execute` running in another thread; a request made between two statements is kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self.requested = False

    def request(self) -> None:
        with self._lock:
            self.requested = True
            if self._cursor is not None:
                self._cursor.interrupt()

    def _attach(self, cursor: duckdb.DuckDBPyConnection | None) -> None:
        with self._lock:
            self._cursor = cursor

    def _check(self) -> None:
        if self.requested:
            raise QueryTimeoutError("the query was interrupted")


class QueryEngine:
    """The shared, locked DuckDB database; `run` executes one checked query on a fresh connection."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        database_url: str | None,
        aws_region: str,
        aws_endpoint_url: str | None,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._temp_dir = tempfile.mkdtemp(prefix="trace-query-")
        self._postgres = database_url is not None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="query")
        self._db = duckdb.connect(
            ":memory:",
            config={
                # The only extensions ever loaded are the two files below, installed from uv.lock's hashed
                # wheels; DuckDB's signature check of them costs ~300 ms per engine and adds nothing to that.
                # Loading anything else is refused once external access is off.
                "allow_unsigned_extensions": True,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "python_enable_replacements": False,
                "temp_directory": self._temp_dir,
            },
        )
        try:
            self._configure(database_url, aws_region, aws_endpoint_url)
        except BaseException:
            self.close()
            raise

    def _configure(self, database_url: str | None, aws_region: str, aws_endpoint_url: str | None) -> None:
        db = self._db
        for name in ("httpfs", "postgres_scanner"):
            db.execute(f"LOAD {_literal(str(extension_file(name)))}")
        root = self._store.root.rstrip("/") + "/"
        if root.startswith("s3://"):
            db.execute(_s3_secret(aws_region, aws_endpoint_url))
        if database_url is not None:
            db.execute(_postgres_secret(database_url))
            # Read-only, and only the schema of dataset tables is in its catalog.
            db.execute(
                f"ATTACH '' AS {POSTGRES_CATALOG} "
                f"(TYPE postgres, SECRET trace_postgres, READ_ONLY, SCHEMA {_literal(DATA_SCHEMA)})"
            )
        db.execute("SET parquet_metadata_cache = true")
        db.execute(f"SET allowed_directories = [{_literal(root)}]")
        db.execute("SET enable_external_access = false")
        db.execute("SET lock_configuration = true")

    def check(self, sql: str) -> CheckedQuery:
        """The statement and the dataset names it reads, or `QueryRefusedError` / `QuerySqlError`."""
        with self._lock:
            parser = self._db.cursor()
        try:
            return check_query(parser, sql)
        finally:
            parser.close()

    async def run(
        self, query: CheckedQuery, datasets: Sequence[PinnedDataset], *, max_rows: int, timeout_s: float
    ) -> QueryResult:
        """`execute` on the engine's threads; past `timeout_s` the query is interrupted (`QueryTimeoutError`)."""
        return await self._within(timeout_s, lambda interrupt: self.execute(query, datasets, max_rows, interrupt))

    async def run_to_parquet(
        self,
        query: CheckedQuery,
        datasets: Sequence[PinnedDataset],
        target: Path,
        *,
        max_rows: int,
        timeout_s: float,
    ) -> WrittenResult:
        """`write_parquet` on the engine's threads, with `run`'s timeout."""
        return await self._within(
            timeout_s, lambda interrupt: self.write_parquet(query, datasets, target, max_rows, interrupt)
        )

    async def _within(self, timeout_s: float, work: Callable[[Interrupt], _T]) -> _T:
        interrupt = Interrupt()
        running = asyncio.get_running_loop().run_in_executor(self._executor, work, interrupt)
        try:
            done, _ = await asyncio.wait({running}, timeout=timeout_s)
        finally:
            # On a timeout, or the caller going away: stop DuckDB, and wait, so the connection is closed.
            while not running.done():
                interrupt.request()
                await asyncio.wait({running}, timeout=_INTERRUPT_RETRY_S)
        if not done:
            running.exception()  # retrieved: the interruption is the answer
            raise QueryTimeoutError(f"the query ran longer than timeout_s={timeout_s:g} and was interrupted")
        return running.result()

    def execute(
        self,
        query: CheckedQuery,
        datasets: Sequence[PinnedDataset],
        max_rows: int,
        interrupt: Interrupt | None = None,
    ) -> QueryResult:
        """Run `query` over `datasets` on a fresh connection, in the calling thread; at most `max_rows` rows."""
        with self._reading(query, datasets, interrupt) as (reader, column_types):
            first = _FirstRows(reader, max_rows)
            table = pa.Table.from_batches(list(first), schema=reader.schema)
            return QueryResult(table, column_types, first.truncated)

    def write_parquet(
        self,
        query: CheckedQuery,
        datasets: Sequence[PinnedDataset],
        target: Path,
        max_rows: int,
        interrupt: Interrupt | None = None,
    ) -> WrittenResult:
        """`execute`, streaming the rows into the Parquet file `target` instead of memory."""
        with self._reading(query, datasets, interrupt) as (reader, column_types):
            first, rows = _FirstRows(reader, max_rows), 0
            with pq.ParquetWriter(target, reader.schema) as writer:
                for batch in first:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            return WrittenResult(rows, tuple(reader.schema.names), column_types, first.truncated)

    def read_parquet_page(self, key: str, offset: int, limit: int) -> pa.Table:
        """Rows `offset … offset + limit - 1` of the single Parquet file `key` of the object store, in file order
        (a stored result; never user SQL)."""
        with self._lock:
            cursor = self._db.cursor()
        try:
            source = _literal(self._store.url(key))
            return cursor.execute(
                f"SELECT * FROM read_parquet({source}) LIMIT {int(limit)} OFFSET {int(offset)}"
            ).to_arrow_table()
        except duckdb.Error as error:
            raise ResultUnavailableError(f"the stored result cannot be read: {error}") from None
        finally:
            cursor.close()

    @contextmanager
    def _reading(
        self, query: CheckedQuery, datasets: Sequence[PinnedDataset], interrupt: Interrupt | None
    ) -> Iterator[tuple[pa.RecordBatchReader, tuple[str, ...]]]:
        """The query's rows as Arrow batches and DuckDB's column types, on a fresh connection whose catalog is one
        view per pinned dataset; DuckDB's errors become `QueryError`s."""
        interrupt = interrupt or Interrupt()
        with self._lock:
            cursor = self._db.cursor()
        interrupt._attach(cursor)
        try:
            for dataset in datasets:
                interrupt._check()
                self._create_view(cursor, dataset)
            interrupt._check()
            cursor.execute(query.sql)
            column_types = tuple(str(column[1]) for column in cursor.description or ())
            yield cursor.to_arrow_reader(_BATCH_ROWS), column_types
        except duckdb.InterruptException:
            raise QueryTimeoutError("the query was interrupted") from None
        except duckdb.PermissionException as error:
            raise QueryRefusedError(str(error)) from None
        except duckdb.Error as error:
            raise QuerySqlError(str(error)) from None
        finally:
            interrupt._attach(None)
            cursor.close()

    def _create_view(self, cursor: duckdb.DuckDBPyConnection, dataset: PinnedDataset) -> None:
        if dataset.storage == "postgres":
            source = self._postgres_source(dataset)
        else:
            source = f"SELECT * FROM read_parquet({_literal(self._store.url(dataset.storage_location) + '/*.parquet')})"
        if source is None:
            source = _empty_relation(dataset)
        try:
            cursor.execute(f"CREATE TEMP VIEW {_identifier(dataset.dataset_name)} AS {source}")
        except duckdb.IOException as error:
            if "No files found" not in str(error):
                raise
            cursor.execute(f"CREATE TEMP VIEW {_identifier(dataset.dataset_name)} AS {_empty_relation(dataset)}")

    def _postgres_source(self, dataset: PinnedDataset) -> str | None:
        """A select of the table's user columns; None when the version's table does not exist yet."""
        if not self._postgres:
            raise DatasetUnavailableError(
                f"dataset {dataset.dataset_name!r} is in Postgres, which this engine cannot read"
            )
        match = _TABLE_LOCATION.match(dataset.storage_location)
        if match is None:
            raise DatasetUnavailableError(f"dataset {dataset.dataset_name!r} has no readable table")
        if not dataset.table_columns:
            return None
        columns = ", ".join(_identifier(column) for column in dataset.table_columns)
        return f"SELECT {columns} FROM {POSTGRES_CATALOG}.{DATA_SCHEMA}.{_identifier(match.group(1))}"

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._db.close()
        shutil.rmtree(self._temp_dir, ignore_errors=True)


class _FirstRows:
    """A reader's batches up to `max_rows` rows, then `truncated` says whether rows were cut off. Reading stops
    there, so a `select *` over a large dataset costs only what it returns."""

    def __init__(self, reader: pa.RecordBatchReader, max_rows: int) -> None:
        self._reader = reader
        self._max_rows = max_rows
        self.truncated = False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        rows = 0
        for batch in self._reader:
            if rows + batch.num_rows > self._max_rows:
                self.truncated = True
                yield batch.slice(0, self._max_rows - rows)
                return
            yield batch
            rows += batch.num_rows


def _empty_relation(dataset: PinnedDataset) -> str:
    """No rows, with the registry schema's columns; `DatasetUnavailableError` when the schema is not known."""
    columns = [
        column
        for column in (dataset.schema or {}).get("columns") or []
        if not str(column.get("name", "")).startswith(SYSTEM_COLUMN_PREFIX)
    ]
    if not columns:
        raise DatasetUnavailableError(f"dataset {dataset.dataset_name!r} has no data yet")
    parts = []
    for column in columns:
        column_type = str(column.get("type", ""))
        column_type = _DUCKDB_TYPES.get(column_type.lower(), column_type)
        if not _COLUMN_TYPE.match(column_type):
            raise DatasetUnavailableError(
                f"dataset {dataset.dataset_name!r} has no data yet and its schema type {column_type!r} is not known"
            )
        parts.append(f"CAST(NULL AS {column_type}) AS {_identifier(str(column['name']))}")
    return f"SELECT {', '.join(parts)} WHERE false"


def _s3_secret(region: str, endpoint_url: str | None) -> str:
    """httpfs's S3 secret from the standard AWS environment variables and Trace's endpoint and region."""
    options = {
        "TYPE": "s3",
        "KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ""),
        "SECRET": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "SESSION_TOKEN": os.environ.get("AWS_SESSION_TOKEN", ""),
        "REGION": region,
    }
    if endpoint_url:
        endpoint = urlparse(endpoint_url)
        options |= {"ENDPOINT": endpoint.netloc, "URL_STYLE": "path", "USE_SSL": str(endpoint.scheme == "https")}
    body = ", ".join(
        f"{key} {value if key in {'TYPE', 'USE_SSL'} else _literal(value)}" for key, value in options.items()
    )
    return f"CREATE SECRET trace_s3 ({body})"


def _postgres_secret(database_url: str) -> str:
    """The DSN as a secret, so it appears in no view definition and no `duckdb_databases()` path."""
    params = conninfo_to_dict(database_url)
    options = {
        "HOST": params.get("host"),
        "PORT": params.get("port"),
        "DATABASE": params.get("dbname"),
        "USER": params.get("user"),
        "PASSWORD": params.get("password"),
    }
    body = ", ".join(f"{key} {_literal(str(value))}" for key, value in options.items() if value)
    return f"CREATE SECRET trace_postgres (TYPE postgres, {body})"
