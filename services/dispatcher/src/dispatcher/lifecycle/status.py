"""What `GET /v1/dags/{dag}` says about a DAG: the active version, a rebuild in progress with its progress per
job, and the version history."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from dispatcher.repositories import dags as dags_repo
from dispatcher.repositories import lifecycle as repo
from trace_core.db.pool import Connection
from trace_core.db.queries import Row


async def dag_status(conn: Connection, org_id: UUID, dag_name: str) -> dict[str, Any] | None:
    dag = await dags_repo.dag_by_name(conn, org_id, dag_name)
    if dag is None:
        return None
    return {
        "dag": dag_name,
        "dag_id": dag["dag_id"],
        "active_version": dag["active_version"],
        "activated_at": dag["activated_at"],
        "rebuilding_version": dag["rebuilding_version"],
        "rebuild": await _rebuild(conn, dag) if dag["rebuilding_version_id"] is not None else None,
        "created_at": dag["created_at"],
        "jobs": await dags_repo.dag_jobs(conn, dag["active_version_id"]),
        "datasets": await dags_repo.dag_datasets(conn, dag["dag_id"], dag["active_pointer_set_id"]),
        "versions": await repo.version_history(conn, dag["dag_id"]),
    }


async def _rebuild(conn: Connection, dag: Row) -> dict[str, Any]:
    version_id: UUID = dag["rebuilding_version_id"]
    target, backfilled = dag["rebuild_target_event_id"], dag["rebuild_backfilled_event_id"]
    waiting_for = [f"the backfill of events {backfilled + 1}..{target}"] if backfilled != target else []
    blockers = await repo.rebuild_blockers(conn, version_id, dag["active_pointer_set_id"], target)
    waiting_for += blockers.reasons()
    jobs = []
    for row in await repo.rebuild_progress(conn, version_id, dag["active_pointer_set_id"], target):
        by_status: dict[str, int] = row["tasks"]
        jobs.append(
            {
                "job": row["job_name"],
                "job_id": row["job_id"],
                "activation": row["activation"],
                "tasks": {
                    "done": by_status.get("Completed", 0),
                    "total": sum(by_status.values()),
                    "failed": by_status.get("Failed", 0) + by_status.get("Canceled", 0),
                    "by_status": by_status,
                },
                "inputs": row["inputs"],
                "run": row["run_status"],
                "outputs": row["outputs"],
            }
        )
    return {
        "version": dag["rebuilding_version"],
        "started_at": dag["rebuild_started_at"],
        "round": dag["rebuild_round"],
        "round_started_at": dag["rebuild_round_started_at"],
        "target_event_id": target,
        "backfilled_event_id": backfilled,
        "caught_up": not waiting_for,
        "waiting_for": waiting_for,
        "error": dag["rebuild_error"],
        "jobs": jobs,
    }
