"""One Postgres server for the whole test run, a template database built once from the migrations, and a
fresh database cloned from it for each test.

The server is, in order of preference: the one `TRACE_DATABASE_URL` names; a testcontainers Postgres where
a Docker engine answers; the embedded `pgserver` cluster in a temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from trace_core.db.embedded import start_embedded_postgres, stop_embedded_postgres
from trace_core.db.migrate import migrate_url


def _docker_engine_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False  # asking docker-py anyway leaves an unclosed socket behind, which the tests treat as an error
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no engine, no socket, no permission: all mean "not here"
        return False


@contextmanager
def postgres_server(scratch: Path) -> Iterator[tuple[str, str]]:
    """Yield `(admin DSN, kind)` of the server tests use; stop it afterwards if this run started it."""
    env_url = os.environ.get("TRACE_DATABASE_URL")
    if env_url:
        yield env_url, "TRACE_DATABASE_URL"
        return
    if _docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url(), "testcontainers"
        return
    pgdata = scratch / "pgdata"
    dsn = start_embedded_postgres(pgdata)
    try:
        yield dsn, "embedded"
    finally:
        stop_embedded_postgres(pgdata)


def database_dsn(admin_dsn: str, name: str) -> str:
    return make_conninfo(admin_dsn, dbname=name)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextmanager
def template_database(admin_dsn: str) -> Iterator[str]:
    """A database migrated once, used as the template of every per-test database."""
    name = unique_name("trace_template")
    create_database(admin_dsn, name)
    try:
        asyncio.run(migrate_url(database_dsn(admin_dsn, name)))
        yield name
    finally:
        drop_database(admin_dsn, name)
