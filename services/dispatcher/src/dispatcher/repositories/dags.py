"""SQL of DAGs, versions, jobs, datasets and pointer sets."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_all, fetch_one, load_queries

Q = load_queries("dispatcher.repositories", "dags.sql")


async def _one(conn: Connection, name: str, params: dict[str, Any]) -> Row | None:
    return await fetch_one(conn, Q[name], params)


async def _all(conn: Connection, name: str, params: dict[str, Any]) -> list[Row]:
    return await fetch_all(conn, Q[name], params)


async def dag_by_name(conn: Connection, org_id: UUID, dag_name: str) -> Row | None:
    return await _one(conn, "dag_by_name", {"org_id": org_id, "dag_name": dag_name})


async def list_dags(conn: Connection, org_id: UUID) -> list[Row]:
    return await _all(conn, "list_dags", {"org_id": org_id})


async def dataset_names_taken(conn: Connection, org_id: UUID, names: list[str], dag_id: UUID | None) -> list[Row]:
    return await _all(conn, "dataset_names_taken", {"org_id": org_id, "names": names, "dag_id": dag_id})


async def insert_dag(conn: Connection, org_id: UUID, dag_name: str) -> UUID | None:
    row = await _one(conn, "insert_dag", {"org_id": org_id, "dag_name": dag_name})
    return None if row is None else UUID(str(row["dag_id"]))


async def insert_dag_version(conn: Connection, **params: Any) -> None:
    await conn.execute(
        Q["insert_dag_version"], {**params, "config": Jsonb(params["config"]), "changes": Jsonb(params["changes"])}
    )


async def insert_job(conn: Connection, **params: Any) -> UUID:
    row = await _one(conn, "insert_job", {**params, "config": Jsonb(params["config"])})
    assert row is not None
    return UUID(str(row["job_id"]))


async def insert_dag_version_job(conn: Connection, **params: Any) -> None:
    await conn.execute(Q["insert_dag_version_job"], params)


async def insert_dataset(conn: Connection, **params: Any) -> UUID:
    row = await _one(conn, "insert_dataset", params)
    assert row is not None
    return UUID(str(row["dataset_uuid"]))


async def insert_dataset_version(conn: Connection, **params: Any) -> None:
    await conn.execute(Q["insert_dataset_version"], params)


async def insert_job_input(conn: Connection, **params: Any) -> None:
    await conn.execute(Q["insert_job_input"], params)


async def activate_dag(conn: Connection, dag_id: UUID, version_id: UUID, pointer_set_id: UUID) -> None:
    params = {"dag_id": dag_id, "version_id": version_id, "pointer_set_id": pointer_set_id}
    await conn.execute(Q["activate_dag"], params)


async def dag_jobs(conn: Connection, version_id: UUID) -> list[Row]:
    return await _all(conn, "dag_jobs", {"version_id": version_id})


async def dag_datasets(conn: Connection, dag_id: UUID, pointer_set_id: UUID | None) -> list[Row]:
    return await _all(conn, "dag_datasets", {"dag_id": dag_id, "pointer_set_id": pointer_set_id})
