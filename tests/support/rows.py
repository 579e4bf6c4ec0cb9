"""Minimal rows for schema tests: an org with one DAG, one job, its dataset, a version and a task."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

Conn = psycopg.AsyncConnection[dict[str, Any]]


@dataclass
class Graph:
    org_id: UUID
    user_id: UUID
    dag_id: UUID
    dag_version_id: UUID
    job_id: UUID
    dataset_uuid: UUID
    dataset_version: UUID
    task_id: UUID


async def one(conn: Conn, query: str, params: dict[str, Any]) -> Any:
    cursor = await conn.execute(query.encode(), params)
    row = await cursor.fetchone()
    assert row is not None
    return next(iter(row.values()))


async def make_org(conn: Conn, name: str = "acme") -> tuple[UUID, UUID]:
    org_id = await one(conn, "INSERT INTO orgs (name) VALUES (%(n)s) RETURNING org_id", {"n": name})
    user_id = await one(
        conn, "INSERT INTO users (org_id, name) VALUES (%(o)s, 'alice') RETURNING user_id", {"o": org_id}
    )
    for role in ("admin", "writer", "reader"):
        await conn.execute(
            "INSERT INTO org_roles (org_id, name, is_system) VALUES (%(o)s, %(r)s, true)",
            {"o": org_id, "r": role},
        )
    return org_id, user_id


async def make_graph(conn: Conn, org_name: str = "acme") -> Graph:
    org_id, user_id = await make_org(conn, org_name)
    digest = hashlib.sha256(b"x").digest()
    async with conn.transaction():
        dag_id = await one(
            conn, "INSERT INTO dags (org_id, dag_name) VALUES (%(o)s, 'eth') RETURNING dag_id", {"o": org_id}
        )
        version_id = await one(
            conn,
            """INSERT INTO dag_versions (org_id, dag_id, version, status, source_yaml, config, config_hash,
                                         deployed_by)
               VALUES (%(o)s, %(d)s, 1, 'active', 'dag: eth', '{}', %(h)s, %(u)s) RETURNING dag_version_id""",
            {"o": org_id, "d": dag_id, "h": digest, "u": user_id},
        )
        job_id = await one(
            conn,
            """INSERT INTO jobs (org_id, dag_id, job_name, activation, runtime, operator, execution_strategy,
                                 update_strategy, materialization_hash, created_in_version_id)
               VALUES (%(o)s, %(d)s, 'blocks', 'source', 'ecs_python', 'block_follower', 'PerUpdate',
                       'replace', %(h)s, %(v)s) RETURNING job_id""",
            {"o": org_id, "d": dag_id, "h": digest, "v": version_id},
        )
        dataset_uuid = await one(
            conn,
            """INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage, format)
               VALUES (%(o)s, %(d)s, 'blocks', 0, 's3', 'parquet') RETURNING dataset_uuid""",
            {"o": org_id, "d": dag_id},
        )
        dataset_version = await one(
            conn,
            """INSERT INTO dataset_versions (org_id, dataset_uuid, job_id)
               VALUES (%(o)s, %(ds)s, %(j)s) RETURNING dataset_version""",
            {"o": org_id, "ds": dataset_uuid, "j": job_id},
        )
        task_id = await one(
            conn,
            """INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, runtime, max_attempts)
               VALUES (%(o)s, %(d)s, %(v)s, %(j)s, 'ecs_python', 3) RETURNING task_id""",
            {"o": org_id, "d": dag_id, "v": version_id, "j": job_id},
        )
        await conn.execute(
            "UPDATE dags SET active_version_id = %(v)s WHERE dag_id = %(d)s", {"v": version_id, "d": dag_id}
        )
    return Graph(org_id, user_id, dag_id, version_id, job_id, dataset_uuid, dataset_version, task_id)
