"""Registry rows for query tests, written in SQL: an org, a DAG with published datasets, their versions and
the active pointer set, Parquet files and Postgres tables holding the versions' rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.support.rows import Conn, one
from trace_core.auth.principal import SYSTEM_ROLES
from trace_core.auth.repository import Q, bootstrap_org, create_token
from trace_core.naming import DATA_SCHEMA, dataset_table_name
from trace_core.storage import dataset_version_prefix, range_file_key

_HASH = hashlib.sha256(b"query-tests").digest()


@dataclass
class Dataset:
    name: str
    dataset_uuid: UUID
    version: UUID
    storage: str

    @property
    def table(self) -> str:
        return dataset_table_name(self.dataset_uuid, self.version)


@dataclass
class Org:
    """An org whose admin deployed one DAG (`eth`); `datasets` are its published outputs."""

    db: Conn
    org_id: UUID
    admin: dict[str, str]
    dag_id: UUID
    dag_version_id: UUID
    pointer_set_id: UUID
    datasets: dict[str, Dataset] = field(default_factory=dict)

    async def user(self, name: str, roles: list[str]) -> dict[str, str]:
        """Headers carrying a new token of a new user holding `roles`."""
        cursor = await self.db.execute(Q["insert_user"], {"org_id": self.org_id, "name": name, "email": None})
        row = await cursor.fetchone()
        assert row is not None
        for role in roles:
            if role not in SYSTEM_ROLES:
                await self.db.execute(
                    "INSERT INTO org_roles (org_id, name) VALUES (%(o)s, %(r)s) ON CONFLICT DO NOTHING",
                    {"o": self.org_id, "r": role},
                )
            grant = {"org_id": self.org_id, "user_id": row["user_id"], "granted_by": None, "role": role}
            await self.db.execute(Q["grant_role"], grant)
        token = await create_token(self.db, self.org_id, row["user_id"], "test")
        return {"Authorization": f"Bearer {token.secret}"}

    async def grant_read(self, dataset: str, role: str) -> None:
        await self.db.execute(
            """INSERT INTO dataset_read_roles (org_id, dataset_uuid, role_id)
               SELECT %(o)s, %(d)s, role_id FROM org_roles WHERE org_id = %(o)s AND name = %(r)s""",
            {"o": self.org_id, "d": self.datasets[dataset].dataset_uuid, "r": role},
        )

    async def publish(self, name: str, storage: str, schema: dict[str, Any] | None = None) -> Dataset:
        """A published dataset with a first version in the active pointer set."""
        dataset_uuid = await one(
            self.db,
            """INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage, format, write_mode, schema,
                                     dataset_name, published_at)
               VALUES (%(o)s, %(d)s, %(n)s, 0, %(s)s, %(f)s, %(w)s, %(schema)s, %(n)s, now())
               RETURNING dataset_uuid""",
            {
                "o": self.org_id,
                "d": self.dag_id,
                "n": name,
                "s": storage,
                "f": "parquet" if storage == "s3" else None,
                "w": "direct" if storage == "postgres" else None,
                "schema": Jsonb(schema) if schema is not None else None,
            },
        )
        dataset = Dataset(name, dataset_uuid, await self._new_version(name, dataset_uuid, storage), storage)
        await self.db.execute(
            """INSERT INTO pointer_set_entries (pointer_set_id, dataset_uuid, dataset_version)
               VALUES (%(p)s, %(d)s, %(v)s)""",
            {"p": self.pointer_set_id, "d": dataset_uuid, "v": dataset.version},
        )
        self.datasets[name] = dataset
        return dataset

    async def swap(self, name: str) -> Dataset:
        """A new version of `name`, made current the way cutover does: a new pointer set, then one update."""
        old = self.datasets[name]
        new = Dataset(name, old.dataset_uuid, await self._new_version(name, old.dataset_uuid, old.storage), old.storage)
        async with self.db.transaction():
            pointer_set_id = await one(
                self.db,
                """INSERT INTO pointer_sets (org_id, dag_id, dag_version_id, replaces_pointer_set_id)
                   VALUES (%(o)s, %(d)s, %(v)s, %(p)s) RETURNING pointer_set_id""",
                {"o": self.org_id, "d": self.dag_id, "v": self.dag_version_id, "p": self.pointer_set_id},
            )
            await self.db.execute(
                """INSERT INTO pointer_set_entries (pointer_set_id, dataset_uuid, dataset_version)
                   SELECT %(new)s, dataset_uuid,
                          CASE WHEN dataset_uuid = %(d)s THEN %(v)s::uuid ELSE dataset_version END
                   FROM pointer_set_entries WHERE pointer_set_id = %(old)s""",
                {"new": pointer_set_id, "old": self.pointer_set_id, "d": new.dataset_uuid, "v": new.version},
            )
            await self.db.execute(
                "UPDATE dags SET active_pointer_set_id = %(p)s WHERE dag_id = %(d)s",
                {"p": pointer_set_id, "d": self.dag_id},
            )
        self.pointer_set_id = pointer_set_id
        self.datasets[name] = new
        return new

    async def _new_version(self, name: str, dataset_uuid: UUID, storage: str) -> UUID:
        # one job row per version: dataset_versions holds one version per (job, dataset)
        job_id = await one(
            self.db,
            """INSERT INTO jobs (org_id, dag_id, job_name, activation, runtime, operator, execution_strategy,
                                 update_strategy, materialization_hash, created_in_version_id)
               VALUES (%(o)s, %(d)s, %(n)s, 'source', 'ecs_python', 'python', 'PerUpdate', 'replace', %(h)s, %(v)s)
               RETURNING job_id""",
            {"o": self.org_id, "d": self.dag_id, "n": name, "h": _HASH, "v": self.dag_version_id},
        )
        version: UUID = await one(
            self.db,
            """INSERT INTO dataset_versions (org_id, dataset_uuid, job_id) VALUES (%(o)s, %(d)s, %(j)s)
               RETURNING dataset_version""",
            {"o": self.org_id, "d": dataset_uuid, "j": job_id},
        )
        location = (
            dataset_version_prefix(self.org_id, dataset_uuid, version)
            if storage == "s3"
            else f"{DATA_SCHEMA}.{dataset_table_name(dataset_uuid, version)}"
        )
        await self.db.execute(
            "UPDATE dataset_versions SET storage_location = %(l)s WHERE dataset_version = %(v)s",
            {"l": location, "v": version},
        )
        return version

    def parquet_key(self, name: str, start: int, end: int) -> str:
        dataset = self.datasets[name]
        return range_file_key(self.org_id, dataset.dataset_uuid, dataset.version, start, end)

    async def create_table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """The Postgres table of `name`'s current version with `columns` (SQL) plus `_trace_scope`, holding
        `rows` (each with its scope last)."""
        table = sql.Identifier(DATA_SCHEMA, self.datasets[name].table)
        await self.db.execute(sql.SQL("CREATE TABLE {} ({}, _trace_scope text)").format(table, sql.SQL(columns)))
        if rows:
            placeholders = sql.SQL(", ").join(sql.Placeholder() * len(rows[0]))
            async with self.db.cursor() as cursor:
                await cursor.executemany(sql.SQL("INSERT INTO {} VALUES ({})").format(table, placeholders), rows)


def write_parquet(root: Path, key: str, columns: dict[str, list[Any]]) -> None:
    """A Parquet file at `key` under a local object store `root`."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


async def make_org(db: Conn, name: str = "acme") -> Org:
    """An org, its admin (token in `admin`), and a DAG the admin deployed with an empty active pointer set."""
    admin, token = await bootstrap_org(db, name)
    async with db.transaction():
        dag_id = await one(
            db, "INSERT INTO dags (org_id, dag_name) VALUES (%(o)s, 'eth') RETURNING dag_id", {"o": admin.org_id}
        )
        version_id = await one(
            db,
            """INSERT INTO dag_versions (org_id, dag_id, version, status, source_yaml, config, config_hash, deployed_by)
               VALUES (%(o)s, %(d)s, 1, 'active', 'dag: eth', '{}', %(h)s, %(u)s) RETURNING dag_version_id""",
            {"o": admin.org_id, "d": dag_id, "h": _HASH, "u": admin.user_id},
        )
        pointer_set_id = await one(
            db,
            """INSERT INTO pointer_sets (org_id, dag_id, dag_version_id) VALUES (%(o)s, %(d)s, %(v)s)
               RETURNING pointer_set_id""",
            {"o": admin.org_id, "d": dag_id, "v": version_id},
        )
        await db.execute(
            "UPDATE dags SET active_version_id = %(v)s, active_pointer_set_id = %(p)s WHERE dag_id = %(d)s",
            {"v": version_id, "p": pointer_set_id, "d": dag_id},
        )
    return Org(db, admin.org_id, {"Authorization": f"Bearer {token.secret}"}, dag_id, version_id, pointer_set_id)
