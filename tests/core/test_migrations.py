"""Migrations add up to the declared schema, are idempotent, and refuse a tampered history."""

from __future__ import annotations

from importlib import resources

import psycopg
import pytest

from tests.support.catalog import describe_schema
from trace_core.db.migrate import MigrationError, load_migrations, migrate_url


async def test_migrated_schema_equals_declared_schema(database_url: str, empty_database_url: str) -> None:
    declared = resources.files("trace_core.db").joinpath("schema.sql").read_text()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(declared.encode())
    from_migrations, from_declaration = describe_schema(database_url), describe_schema(empty_database_url)
    assert from_migrations["columns"], "the migrated database has no tables"
    for part in from_migrations:
        assert from_migrations[part] == from_declaration[part], f"{part} differ"


async def test_migrating_twice_is_a_noop(empty_database_url: str) -> None:
    first = await migrate_url(empty_database_url)
    assert [m.number for m in first] == [m.number for m in load_migrations()]
    before = describe_schema(empty_database_url)
    assert await migrate_url(empty_database_url) == []
    assert describe_schema(empty_database_url) == before


async def test_an_edited_applied_migration_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE number = 1")
    with pytest.raises(MigrationError, match="was edited after it was applied"):
        await migrate_url(database_url)


async def test_a_newer_database_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (number, name, checksum) VALUES (9999, 'future', 'x')")
    with pytest.raises(MigrationError, match="does not know: \\[9999\\]"):
        await migrate_url(database_url)


async def test_concurrent_migrators_serialize_on_the_advisory_lock(empty_database_url: str) -> None:
    import asyncio

    results = await asyncio.gather(*(migrate_url(empty_database_url) for _ in range(4)))
    assert sorted(len(applied) for applied in results) == [0, 0, 0, len(load_migrations())]


async def test_a_migration_older_than_the_newest_applied_is_refused(database_url: str) -> None:
    """Numbers may leave gaps (branches reserve theirs), but never apply out of order."""
    newest = max(m.number for m in load_migrations())
    older = [m for m in load_migrations() if m.number < newest][-1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE number = %s", (older.number,))
    with pytest.raises(MigrationError, match=f"{older.number:04d}_{older.name} is older than {newest:04d}"):
        await migrate_url(database_url)
