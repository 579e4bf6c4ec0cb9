"""Fixtures every suite shares: the Postgres server, per-test databases, settings and the dispatcher app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from psycopg.rows import dict_row

from tests.support.devchain import Devchain, running_devchain
from tests.support.postgres import (
    create_database,
    database_dsn,
    drop_database,
    postgres_server,
    template_database,
    unique_name,
)
from tests.support.stack import Stack, running_stack
from trace_core.settings import Settings


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of the one Postgres server of this test run, with rights to create databases."""
    with postgres_server(tmp_path_factory.mktemp("postgres")) as (dsn, _kind):
        yield dsn


@pytest.fixture(scope="session")
def pg_template(pg_admin_dsn: str) -> Iterator[str]:
    """Name of the database migrated once per run; per-test databases are cloned from it."""
    with template_database(pg_admin_dsn) as name:
        yield name


@pytest.fixture
def database_url(pg_admin_dsn: str, pg_template: str) -> Iterator[str]:
    """DSN of a fresh, fully migrated database that only this test uses."""
    name = unique_name("trace_test")
    create_database(pg_admin_dsn, name, template=pg_template)
    try:
        yield database_dsn(pg_admin_dsn, name)
    finally:
        drop_database(pg_admin_dsn, name)


@pytest.fixture
def empty_database_url(pg_admin_dsn: str) -> Iterator[str]:
    """DSN of a fresh database with no schema at all (for migration tests)."""
    name = unique_name("trace_empty")
    create_database(pg_admin_dsn, name)
    try:
        yield database_dsn(pg_admin_dsn, name)
    finally:
        drop_database(pg_admin_dsn, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
    """An autocommit connection (dict rows) to this test's database."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and a private TRACE_HOME."""
    return Settings(database_url=database_url, home=tmp_path / "trace-home", migrate_on_start=False)


@pytest.fixture
async def dispatcher(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The dispatcher app, lifespan run (loops included), behind an HTTP test client."""
    from dispatcher.app import create_app

    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A dispatcher process (loops on) on loopback against this test's database, an org with an admin token.
    Start workers with `stack.start_worker()`."""
    with running_stack(database_url, tmp_path / "stack") as running:
        running.start_dispatcher()
        yield running


@pytest.fixture
def devchain(tmp_path: Path) -> Iterator[Devchain]:
    """A devchain process on a free loopback port (seed 7, 20 blocks on top of genesis, no block-time mining),
    with its URL and a JSON-RPC / control client. Use `running_devchain` for another seed or options."""
    with running_devchain(tmp_path / "devchain", seed=7, initial_blocks=20) as chain:
        yield chain
