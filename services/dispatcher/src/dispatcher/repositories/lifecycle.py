"""SQL of the deploy lifecycle: redeploys, a rebuild's backfill and catch-up, cutover, rollback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from trace_core.db.pool import Connection
from trace_core.db.queries import Row, fetch_all, fetch_one, load_queries

Q = load_queries("dispatcher.repositories", "lifecycle.sql")

# The advisory lock between the router (shared, per pass) and the lifecycle transactions that change who reads
# which events (exclusive): see `lock_routing` in lifecycle.sql.
ROUTING_LOCK_KEY = 0x7472616365_08


async def _one(conn: Connection, name: str, params: dict[str, Any]) -> Row | None:
    return await fetch_one(conn, Q[name], params)


async def _all(conn: Connection, name: str, params: dict[str, Any]) -> list[Row]:
    return await fetch_all(conn, Q[name], params)


async def lock_routing(conn: Connection) -> None:
    """Hold the routing lock exclusively until the transaction ends (take it before any other lock)."""
    await conn.execute(Q["lock_routing"], {"key": ROUTING_LOCK_KEY})


async def share_routing_lock(conn: Connection) -> None:
    """The router's side: one pass at a time may not overlap a lifecycle transaction."""
    await conn.execute(Q["share_routing_lock"], {"key": ROUTING_LOCK_KEY})


@dataclass(frozen=True)
class DagState:
    dag_id: UUID
    org_id: UUID
    dag_name: str
    active_version_id: UUID
    active_version: int
    active_config: dict[str, Any]
    active_pointer_set_id: UUID
    rebuilding_version_id: UUID | None
    rebuilding_version: int | None
    rebuilding_config: dict[str, Any] | None


def _state(row: Row | None) -> DagState | None:
    if row is None:
        return None
    return DagState(
        dag_id=row["dag_id"],
        org_id=row["org_id"],
        dag_name=row["dag_name"],
        active_version_id=row["active_version_id"],
        active_version=row["active_version"],
        active_config=row["active_config"],
        active_pointer_set_id=row["active_pointer_set_id"],
        rebuilding_version_id=row["rebuilding_version_id"],
        rebuilding_version=row["rebuilding_version"],
        rebuilding_config=row["rebuilding_config"],
    )


async def dag_state(conn: Connection, org_id: UUID, dag_name: str) -> DagState | None:
    return _state(await _one(conn, "dag_state", {"org_id": org_id, "dag_name": dag_name}))


async def lock_dag_state(conn: Connection, dag_id: UUID) -> DagState | None:
    """The DAG's state, its row locked until the transaction ends."""
    return _state(await _one(conn, "lock_dag_state", {"dag_id": dag_id}))


async def next_version(conn: Connection, dag_id: UUID) -> int:
    row = await _one(conn, "next_version", {"dag_id": dag_id})
    assert row is not None
    return int(row["version"])


@dataclass(frozen=True)
class VersionOutput:
    dataset_uuid: UUID
    dataset_version: UUID
    storage_location: str | None


@dataclass(frozen=True)
class VersionJob:
    """A job row of a version, as a redeploy compares it: what it writes, what it reads, where to."""

    job_id: UUID
    rebuilds: bool
    activation: str
    materialization_hash: bytes
    inputs: tuple[tuple[UUID, UUID | None], ...]  # (dataset_uuid, upstream_job_id) by input index
    outputs: dict[int, VersionOutput]


async def version_jobs(conn: Connection, version_id: UUID) -> dict[str, VersionJob]:
    rows = await _all(conn, "version_jobs", {"version_id": version_id})
    return {
        row["job_name"]: VersionJob(
            job_id=row["job_id"],
            rebuilds=row["rebuilds"],
            activation=row["activation"],
            materialization_hash=bytes(row["materialization_hash"]),
            inputs=tuple((UUID(d), UUID(u) if u else None) for d, u in row["inputs"]),
            outputs={
                o["index"]: VersionOutput(UUID(o["dataset_uuid"]), UUID(o["dataset_version"]), o["storage_location"])
                for o in row["outputs"]
            },
        )
        for row in rows
    }


async def dataset_of_output(conn: Connection, dag_id: UUID, job_name: str, output_index: int) -> Row | None:
    params = {"dag_id": dag_id, "job_name": job_name, "output_index": output_index}
    return await _one(conn, "dataset_of_output", params)


async def insert_version_pointer_set(
    conn: Connection, pointer_set_id: UUID, org_id: UUID, dag_id: UUID, version_id: UUID, replaces: UUID | None
) -> None:
    """The pointer set `pointer_set_id` of a version: every output of its job rows, at the version each writes."""
    params = {
        "pointer_set_id": pointer_set_id,
        "org_id": org_id,
        "dag_id": dag_id,
        "version_id": version_id,
        "replaces": replaces,
    }
    await conn.execute(Q["insert_version_pointer_set"], params)


async def version_pointer_set(conn: Connection, version_id: UUID) -> Row | None:
    return await _one(conn, "version_pointer_set", {"version_id": version_id})


async def start_rebuild(
    conn: Connection, dag_id: UUID, version_id: UUID, seen_pointer_set_id: UUID, seen_rebuilding_id: UUID | None
) -> bool:
    params = {
        "dag_id": dag_id,
        "version_id": version_id,
        "seen_pointer_set_id": seen_pointer_set_id,
        "seen_rebuilding_id": seen_rebuilding_id,
    }
    return await _one(conn, "start_rebuild", params) is not None


async def swap_active(
    conn: Connection,
    dag_id: UUID,
    version_id: UUID,
    pointer_set_id: UUID,
    seen_pointer_set_id: UUID,
    seen_rebuilding_id: UUID | None,
) -> bool:
    """Compare-and-swap of the DAG's active version and pointer set; False when the DAG changed meanwhile."""
    params = {
        "dag_id": dag_id,
        "version_id": version_id,
        "pointer_set_id": pointer_set_id,
        "seen_pointer_set_id": seen_pointer_set_id,
        "seen_rebuilding_id": seen_rebuilding_id,
    }
    return await _one(conn, "swap_active", params) is not None


async def stop_rebuild(conn: Connection, dag_id: UUID, version_id: UUID) -> bool:
    return await _one(conn, "stop_rebuild", {"dag_id": dag_id, "version_id": version_id}) is not None


async def set_version_status(conn: Connection, version_id: UUID, status: str) -> None:
    await conn.execute(Q["set_version_status"], {"version_id": version_id, "status": status})


async def begin_rebuild_round(conn: Connection, version_id: UUID, seen_round: int) -> Row | None:
    return await _one(conn, "begin_rebuild_round", {"version_id": version_id, "seen_round": seen_round})


async def claim_backfill(conn: Connection, version_id: UUID, after: int, through: int) -> bool:
    params = {"version_id": version_id, "after": after, "through": through}
    return await _one(conn, "claim_backfill", params) is not None


async def set_rebuild_error(conn: Connection, version_id: UUID, error: str | None) -> None:
    await conn.execute(Q["set_rebuild_error"], {"version_id": version_id, "error": error})


async def rebuilding_versions(conn: Connection, lag_s: float) -> list[Row]:
    return await _all(conn, "rebuilding_versions", {"lag_s": lag_s})


async def backfill_tasks(
    conn: Connection,
    version_id: UUID,
    job_ids: list[UUID],
    *,
    held_only: bool,
    after: int,
    through: int | None,
) -> int:
    """Tasks for the events (after, through] the jobs read and have none for; returns how many were made."""
    if not job_ids:
        return 0
    params = {
        "version_id": version_id,
        "job_ids": job_ids,
        "held_only": held_only,
        "after": after,
        "through": through,
    }
    row = await _one(conn, "backfill_tasks", params)
    return 0 if row is None else int(row["tasks"])


@dataclass(frozen=True)
class Blockers:
    """What keeps a rebuild from its cutover; all zero means it caught up with its round's target."""

    waiting: int
    in_flight: int
    failed: int
    unrouted: int
    sources_behind: int

    @property
    def caught_up(self) -> bool:
        return not self.reasons()

    def reasons(self) -> list[str]:
        """What the rebuild still waits for, in words."""
        reasons = []
        if self.waiting or self.in_flight:
            reasons.append(f"{self.waiting + self.in_flight} task(s) of the round to finish")
        if self.failed:
            reasons.append(f"{self.failed} task(s) that failed or were canceled (deploy a fix, or roll back)")
        if self.unrouted:
            reasons.append(f"{self.unrouted} event(s) to be routed")
        if self.sources_behind:
            reasons.append(f"{self.sources_behind} rebuilt source(s) to reach the head of the source they replace")
        return reasons


async def rebuild_blockers(conn: Connection, version_id: UUID, active_pointer_set_id: UUID, target: int) -> Blockers:
    params = {"version_id": version_id, "active_pointer_set_id": active_pointer_set_id, "target": target}
    row = await _one(conn, "rebuild_blockers", params)
    assert row is not None
    return Blockers(**{key: int(value) for key, value in row.items()})


async def events_after_target(conn: Connection, version_id: UUID, target: int) -> bool:
    row = await _one(conn, "events_after_target", {"version_id": version_id, "target": target})
    return bool(row and row["waiting"])


async def end_live_tasks(conn: Connection, job_ids: list[UUID], reason: str, *, sources_only: bool = False) -> Row:
    """Cancel the live tasks of `job_ids` (running ones cooperatively); returns {canceled, stopping}."""
    if not job_ids:
        return {"canceled": 0, "stopping": 0}
    params = {"job_ids": job_ids, "reason": reason, "sources_only": sources_only}
    row = await _one(conn, "end_live_tasks", params)
    assert row is not None
    return row


async def retag_live_tasks(conn: Connection, job_ids: list[UUID], version_id: UUID) -> None:
    if job_ids:
        await conn.execute(Q["retag_live_tasks"], {"job_ids": job_ids, "version_id": version_id})


async def copy_operator_state(conn: Connection, from_job_id: UUID, to_job_id: UUID) -> None:
    await conn.execute(Q["copy_operator_state"], {"from_job_id": from_job_id, "to_job_id": to_job_id})


async def take_over_tasks(conn: Connection, from_job_id: UUID, to_job_id: UUID, version_id: UUID) -> int:
    params = {"from_job_id": from_job_id, "to_job_id": to_job_id, "version_id": version_id}
    row = await _one(conn, "take_over_tasks", params)
    return 0 if row is None else int(row["tasks"])


async def source_run_to_restore(conn: Connection, job_id: UUID) -> Row | None:
    return await _one(conn, "source_run_to_restore", {"job_id": job_id})


async def apply_publish(conn: Connection, dag_id: UUID, names: dict[UUID, str]) -> None:
    """Make `names` (dataset uuid -> name) exactly what this DAG publishes; raises UniqueViolation when another
    DAG holds one of the names."""
    params = {"dag_id": dag_id, "dataset_uuids": list(names), "names": list(names.values())}
    await conn.execute(Q["unpublish_other_datasets"], params)
    if names:
        await conn.execute(Q["publish_datasets"], params)


async def upsert_slots(
    conn: Connection, org_id: UUID, dag_id: UUID, pool_name: str, slots: list[tuple[dict[str, str], dict[str, str]]]
) -> None:
    params = {
        "org_id": org_id,
        "dag_id": dag_id,
        "pool_name": pool_name,
        "envs": [Jsonb(env) for env, _ in slots],
        "secret_envs": [Jsonb(secret_env) for _, secret_env in slots],
    }
    await conn.execute(Q["upsert_slots"], params)


async def retire_slots(conn: Connection, dag_id: UUID, pool_sizes: dict[str, int]) -> None:
    params = {"dag_id": dag_id, "pool_names": list(pool_sizes), "sizes": list(pool_sizes.values())}
    await conn.execute(Q["retire_slots"], params)


async def version_history(conn: Connection, dag_id: UUID) -> list[Row]:
    return await _all(conn, "version_history", {"dag_id": dag_id})


async def version_by_number(conn: Connection, dag_id: UUID, version: int) -> Row | None:
    return await _one(conn, "version_by_number", {"dag_id": dag_id, "version": version})


async def previous_version(conn: Connection, dag_id: UUID) -> Row | None:
    return await _one(conn, "previous_version", {"dag_id": dag_id})


async def rebuild_progress(
    conn: Connection, version_id: UUID, active_pointer_set_id: UUID, target: int | None
) -> list[Row]:
    params = {"version_id": version_id, "active_pointer_set_id": active_pointer_set_id, "target": target or 0}
    return await _all(conn, "rebuild_progress", params)


async def unpublished_but_read(conn: Connection, dag_id: UUID, kept: list[UUID]) -> Row | None:
    return await _one(conn, "unpublished_but_read", {"dag_id": dag_id, "kept": kept})
