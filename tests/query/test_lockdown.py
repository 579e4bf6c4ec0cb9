"""The locked-down engine: every statement that could reach past the pinned datasets is a clear 400, refused by
the statement checks; and DuckDB's own lockdown refuses the same things when the checks are bypassed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from tests.support.postgres import create_database, database_dsn, drop_database, unique_name
from tests.support.stack import free_port
from trace_core.auth.repository import bootstrap_org
from trace_core.objectstore import LocalObjectStore
from trace_core.query import CheckedQuery, QueryEngine, QueryRefusedError, QuerySqlError
from trace_core.settings import Settings

REFUSED = {
    "read_parquet_file": ("select * from read_parquet('/etc/passwd')", "read_parquet() is not allowed"),
    "read_csv_url": ("select * from read_csv('http://127.0.0.1:9/x.csv')", "read_csv() is not allowed"),
    "nested_read_text": ("select (select count(*) from read_text('/etc/passwd'))", "read_text() is not allowed"),
    "file_as_table": ("select * from '/etc/passwd'", "never files or URLs"),
    "copy_to": ("COPY (select 1) TO '/tmp/trace-out.csv'", "COPY is not allowed"),
    "attach": ("ATTACH '/tmp/trace-other.db' AS other", "ATTACH is not allowed"),
    "install": ("INSTALL spatial", "INSTALL and LOAD are not allowed"),
    "load": ("LOAD httpfs", "INSTALL and LOAD are not allowed"),
    "set": ("SET threads = 1", "SET is not allowed"),
    "reset": ("RESET allowed_directories", "SET is not allowed"),
    "pragma": ("PRAGMA enable_profiling", "PRAGMA is not allowed"),
    "create_table": ("CREATE TABLE t (a int)", "CREATE is not allowed"),
    "create_view": ("CREATE VIEW blocks AS SELECT 1", "CREATE is not allowed"),
    "insert": ("INSERT INTO t VALUES (1)", "INSERT is not allowed"),
    "update": ("UPDATE t SET a = 2", "UPDATE is not allowed"),
    "delete": ("DELETE FROM t", "DELETE is not allowed"),
    "drop": ("DROP TABLE t", "DROP is not allowed"),
    "postgres_query": ("select * from postgres_query('trace_pg', 'select * from users')", "postgres_query()"),
    "postgres_scan": ("select * from postgres_scan('', 'public', 'users')", "postgres_scan() is not allowed"),
    "attached_postgres": ("select * from trace_pg.trace_data.anything", "qualified names are not allowed"),
    "system_catalog": ("select * from duckdb_databases()", "duckdb_databases() is not allowed"),
    "information_schema": ("select * from information_schema.tables", "qualified names are not allowed"),
    "settings": ("select current_setting('allowed_directories')", "current_setting() is not allowed"),
    "show_tables": ("SHOW ALL TABLES", "SHOW, DESCRIBE and SUMMARIZE are not allowed"),
    "two_statements": ("select 1; select 2", "exactly one SQL statement"),
}


@pytest.fixture(scope="module")
def lockdown_database(pg_admin_dsn: str, pg_template: str) -> Iterator[str]:
    """One migrated database for this module: its tests only read."""
    name = unique_name("trace_lockdown")
    create_database(pg_admin_dsn, name, template=pg_template)
    try:
        yield database_dsn(pg_admin_dsn, name)
    finally:
        drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="module")
async def lockdown_client(
    lockdown_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[AsyncTestClient[Any], dict[str, str]]]:
    """The Query Service app on this module's database, and an admin's headers."""
    from query_service.app import create_app

    async with await psycopg.AsyncConnection.connect(lockdown_database, autocommit=True, row_factory=dict_row) as db:
        _, token = await bootstrap_org(db, "acme")
    settings = Settings(
        database_url=lockdown_database,
        home=tmp_path_factory.mktemp("home"),
        migrate_on_start=False,
        dispatcher_url=f"http://127.0.0.1:{free_port()}",  # nothing listens: batch refusals never get that far
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client, {"Authorization": f"Bearer {token.secret}"}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_refused_statement(lockdown_client: tuple[AsyncTestClient[Any], dict[str, str]], case: str) -> None:
    client, headers = lockdown_client
    sql, message = REFUSED[case]
    response = await client.post("/v1/query", json={"sql": sql}, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_refused_statement_in_batch_mode(
    lockdown_client: tuple[AsyncTestClient[Any], dict[str, str]], lockdown_database: str, case: str
) -> None:
    """Refused at submission, with the interactive answer, before any query or task exists (this client's
    dispatcher URL answers nothing: a statement that got past the checks would be a 503)."""
    client, headers = lockdown_client
    sql, message = REFUSED[case]
    batch = await client.post("/v1/query", json={"sql": sql, "mode": "batch"}, headers=headers)
    now = await client.post("/v1/query", json={"sql": sql}, headers=headers)
    assert batch.status_code == 400, batch.text
    assert message in batch.json()["detail"] and batch.json() == now.json()
    async with await psycopg.AsyncConnection.connect(lockdown_database) as db:
        cursor = await db.execute("SELECT (SELECT count(*) FROM queries), (SELECT count(*) FROM tasks)")
        assert await cursor.fetchone() == (0, 0)


@pytest.fixture(scope="module")
def engine(lockdown_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueryEngine]:
    """An engine over an empty local object store, attached to this module's database."""
    engine = QueryEngine(
        LocalObjectStore(tmp_path_factory.mktemp("objects")),
        database_url=lockdown_database,
        aws_region="us-east-1",
        aws_endpoint_url=None,
    )
    try:
        yield engine
    finally:
        engine.close()


def unchecked(engine: QueryEngine, sql: str) -> Any:
    """Run `sql` without the statement checks: what DuckDB's own lockdown allows."""
    return engine.execute(CheckedQuery(sql, frozenset()), [], max_rows=100).table.to_pylist()


@pytest.mark.parametrize(
    "sql",
    [
        "select * from read_parquet('/etc/passwd')",
        "select * from read_csv('http://127.0.0.1:9/x.csv')",
        "ATTACH '/tmp/trace-other.db' AS other",
        "INSTALL spatial",
        "LOAD spatial",
    ],
)
def test_duckdb_lockdown_refuses_files_urls_and_extensions(engine: QueryEngine, sql: str) -> None:
    with pytest.raises(QueryRefusedError, match="disabled"):
        unchecked(engine, sql)


def test_duckdb_lockdown_refuses_copy_to(engine: QueryEngine, tmp_path: Path) -> None:
    with pytest.raises(QueryRefusedError, match="disabled"):
        unchecked(engine, f"COPY (select 1) TO '{tmp_path / 'out.csv'}'")
    assert not (tmp_path / "out.csv").exists()


def test_duckdb_configuration_is_locked(engine: QueryEngine) -> None:
    with pytest.raises(QuerySqlError, match="configuration has been locked"):
        unchecked(engine, "SET enable_external_access = true")


def test_each_query_has_a_fresh_connection(engine: QueryEngine) -> None:
    unchecked(engine, "CREATE TEMP VIEW leftover AS SELECT 42 AS answer")
    with pytest.raises(QuerySqlError, match="leftover"):
        unchecked(engine, "select * from leftover")


def test_the_database_password_is_a_secret(lockdown_database: str, tmp_path: Path) -> None:
    # the test server trusts loopback, so any password connects; it must show nowhere
    with_password = make_conninfo(lockdown_database, password="sekrit-password")
    engine = QueryEngine(
        LocalObjectStore(tmp_path), database_url=with_password, aws_region="us-east-1", aws_endpoint_url=None
    )
    try:
        [attached] = unchecked(engine, "select path from duckdb_databases() where database_name = 'trace_pg'")
        assert attached == {"path": ""}
        secrets = str(unchecked(engine, "select * from duckdb_secrets()"))
        assert "sekrit-password" not in secrets and "password=redacted" in secrets
    finally:
        engine.close()
