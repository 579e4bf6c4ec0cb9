"""Numbered plain-SQL migrations, applied in order under a Postgres advisory lock.

Every file `NNNN_name.sql` in `trace_core/db/migrations` is one migration, applied in its own transaction.
Applied migrations are recorded with a checksum; editing one that has been applied is an error, not a
silent drift.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from trace_core.logging import get_logger

log = get_logger(__name__)

# pg_advisory_lock key shared by every process that migrates (CLI and every service at start).
MIGRATION_LOCK_KEY = 0x7472616365_01
_FILE_NAME = re.compile(r"^(?P<number>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's migration history does not match the migrations this code ships."""


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped with trace_core, in order; duplicate numbers are errors.

    Numbers may leave gaps: parallel lines of work reserve theirs ahead (one branch ships 0008 before 0005 to
    0007 land). `migrate` refuses to apply a migration numbered below one a database already has, so order is
    still never broken."""
    found: list[Migration] = []
    for entry in resources.files("trace_core.db.migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match["number"]), match["name"], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if len(set(numbers)) != len(numbers) or (numbers and numbers[0] < 1):
        raise MigrationError(f"migration numbers must be unique and start at 1 or later, found {numbers}")
    return found


_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    number integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: psycopg.AsyncConnection[Any], *, through: int | None = None) -> list[Migration]:
    """Apply pending migrations; returns the ones applied (empty when the schema is current).

    The connection must be in autocommit mode: each migration commits on its own, and the advisory lock is
    held across them so concurrent starters wait instead of racing. `through` stops after that number (a database
    as an older release left it, for the tests of a migration that moves data).
    """
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection")
    migrations = [m for m in load_migrations() if through is None or m.number <= through]
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        await conn.execute(_CREATE_HISTORY)
        cursor = await conn.execute("SELECT number, name, checksum FROM schema_migrations ORDER BY number")
        applied = {int(row[0]): (str(row[1]), str(row[2])) for row in await cursor.fetchall()}
        known = {m.number for m in migrations}
        unknown = sorted(set(applied) - known)
        if unknown:
            raise MigrationError(f"the database has migrations this code does not know: {unknown}; upgrade Trace")
        newest = max(applied, default=0)
        late = [m for m in migrations if m.number not in applied and m.number < newest]
        if late:
            raise MigrationError(
                f"migration {late[0].number:04d}_{late[0].name} is older than {newest:04d}, which this database "
                f"already has; renumber it after {newest:04d}"
            )
        done: list[Migration] = []
        for migration in migrations:
            if migration.number in applied:
                name, checksum = applied[migration.number]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.number:04d}_{name} was edited after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (number, name, checksum) VALUES (%s, %s, %s)",
                    (migration.number, migration.name, migration.checksum),
                )
            log.info("db.migration.applied", number=migration.number, name=migration.name)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


async def migrate_url(database_url: str, *, through: int | None = None) -> list[Migration]:
    """Open a connection to `database_url`, migrate it (up to `through`), close it."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await migrate(conn, through=through)
