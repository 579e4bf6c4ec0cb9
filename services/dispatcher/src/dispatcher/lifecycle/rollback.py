"""Rollback (SPEC §6): one transaction restores a version that served before, with the pointer set it served,
and takes the rolled-back version out of service: its jobs' waiting and dispatched tasks are canceled, running
ones are asked to stop (heartbeat and task-fetch answer canceled), and the scheduler no longer dispatches them
(only jobs of the active or rebuilding version run). Nothing the rolled-back version wrote becomes current: its
new jobs wrote only into their own dataset versions, which no served pointer set names.

Jobs the restored version brings back get the tasks they missed while they were out of service (every event of
their inputs they have no task for), and their sources run again. A rollback during a rebuild aborts the rebuild;
without `to_version` that is all it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from litestar.exceptions import ClientException, NotFoundException
from litestar.status_codes import HTTP_409_CONFLICT

from dispatcher.lifecycle import serving
from dispatcher.repositories import lifecycle as repo
from trace_core.auth.principal import Principal
from trace_core.db.pool import Connection
from trace_core.db.queries import Row
from trace_core.logging import get_logger

log = get_logger(__name__)


@dataclass
class RollbackResult:
    dag: str
    active_version: int
    rolled_back_version: int | None  # the version that stopped serving (None when only a rebuild was aborted)
    aborted_rebuild: int | None
    canceled_tasks: int
    stopping_tasks: int
    restored_tasks: int


def _conflict(detail: str) -> ClientException:
    return ClientException(detail=detail, status_code=HTTP_409_CONFLICT)


_NOT_RESTORABLE = {
    "rebuilding": "is being rebuilt and has never served; roll back without to_version to abort its rebuild",
    "rolled_back": "was rolled back: its tasks were canceled and what it wrote is not trusted; deploy its YAML "
    "again to rebuild it",
    "abandoned": "was superseded before it served; deploy its YAML again to build it",
}


async def rollback_dag(conn: Connection, principal: Principal, dag_name: str, to_version: int | None) -> RollbackResult:
    try:
        async with conn.transaction():
            seen = await repo.dag_state(conn, principal.org_id, dag_name)
            if seen is None:
                raise NotFoundException(f"no DAG {dag_name!r}")
            await repo.lock_routing(conn)
            state = await repo.lock_dag_state(conn, seen.dag_id)
            assert state is not None
            # compare-and-swap, as a deploy does: a rollback acts on the DAG as its caller saw it
            if (state.active_pointer_set_id, state.rebuilding_version_id) != (
                seen.active_pointer_set_id,
                seen.rebuilding_version_id,
            ):
                raise _conflict(
                    f"DAG {dag_name!r} changed while this rollback was prepared (a concurrent deploy, cutover or "
                    "rollback); look at it again and roll back again if you still want to"
                )
            target = await _target(conn, state, to_version)
            return await _roll_back(conn, state, target)
    except serving.PublishConflictError as error:
        raise _conflict(f"the restored version cannot publish its names: {error}") from None


async def _target(conn: Connection, state: repo.DagState, to_version: int | None) -> Row | None:
    """The version to restore; None to only abort the rebuild in progress."""
    if to_version is not None:
        row = await repo.version_by_number(conn, state.dag_id, to_version)
        if row is None:
            raise NotFoundException(f"DAG {state.dag_name!r} has no version {to_version}")
        if row["version"] == state.active_version:
            if state.rebuilding_version_id is None:
                raise _conflict(f"version {to_version} of DAG {state.dag_name!r} is already active")
            return None
        if row["status"] != "retired":
            raise _conflict(f"version {to_version} of DAG {state.dag_name!r} {_NOT_RESTORABLE[row['status']]}")
        return row
    if state.rebuilding_version_id is not None:
        return None
    row = await repo.previous_version(conn, state.dag_id)
    if row is None:
        raise _conflict(
            f"DAG {state.dag_name!r} has no previous version to roll back to: no retired version can serve again "
            f"before version {state.active_version} (see `trace versions {state.dag_name}`)"
        )
    return row


async def _roll_back(conn: Connection, state: repo.DagState, target: Row | None) -> RollbackResult:
    active_jobs = await repo.version_jobs(conn, state.active_version_id)
    rebuilt_ids: set[UUID] = set()
    if state.rebuilding_version_id is not None:
        await repo.set_version_status(conn, state.rebuilding_version_id, "rolled_back")
        rebuilt_ids = {
            job.job_id for job in (await repo.version_jobs(conn, state.rebuilding_version_id)).values() if job.rebuilds
        }
    if target is None:
        assert state.rebuilding_version_id is not None and state.rebuilding_version is not None
        await repo.stop_rebuild(conn, state.dag_id, state.rebuilding_version_id)
        served = {job.job_id for job in active_jobs.values()}
        ended = await repo.end_live_tasks(
            conn,
            sorted(rebuilt_ids - served),
            f"rolled back: the rebuild of version {state.rebuilding_version} was aborted",
        )
        await repo.retag_live_tasks(conn, sorted(served), state.active_version_id)
        active = serving.stored_config(state.active_config)
        await serving.sync_worker_pools(conn, state.org_id, state.dag_id, active)
        log.info("dispatcher.dag.rebuild_aborted", dag=state.dag_name, version=state.rebuilding_version, **ended)
        return RollbackResult(
            state.dag_name,
            state.active_version,
            None,
            state.rebuilding_version,
            ended["canceled"],
            ended["stopping"],
            0,
        )

    target_id: UUID = target["dag_version_id"]
    config = serving.stored_config(target["config"])
    pointer_set = await repo.version_pointer_set(conn, target_id)
    assert pointer_set is not None
    swapped = await repo.swap_active(
        conn,
        state.dag_id,
        target_id,
        pointer_set["pointer_set_id"],
        state.active_pointer_set_id,
        state.rebuilding_version_id,
    )
    assert swapped, "the DAG row is locked: nothing can have changed it"
    await repo.set_version_status(conn, state.active_version_id, "rolled_back")
    await repo.set_version_status(conn, target_id, "active")

    target_jobs = await repo.version_jobs(conn, target_id)
    served = {job.job_id for job in target_jobs.values()}
    active_ids = {job.job_id for job in active_jobs.values()}
    ended = await repo.end_live_tasks(
        conn,
        sorted((active_ids | rebuilt_ids) - served),
        f"rolled back: version {state.active_version} is no longer served",
    )
    restored = {name for name, job in target_jobs.items() if job.job_id not in active_ids}
    job_ids = {name: job.job_id for name, job in target_jobs.items()}
    backfilled = await repo.backfill_tasks(
        conn, target_id, [job_ids[name] for name in sorted(restored)], held_only=False, after=0, through=None
    )
    await serving.restore_source_runs(conn, config, job_ids, restored)
    await repo.retag_live_tasks(conn, sorted(served), target_id)
    await serving.publish_version(conn, state.org_id, state.dag_id, config)
    await serving.sync_worker_pools(conn, state.org_id, state.dag_id, config)
    log.info(
        "dispatcher.dag.rolled_back",
        dag=state.dag_name,
        from_version=state.active_version,
        to_version=target["version"],
        aborted_rebuild=state.rebuilding_version,
        restored_jobs=sorted(restored),
        restored_tasks=backfilled,
        **ended,
    )
    return RollbackResult(
        dag=state.dag_name,
        active_version=target["version"],
        rolled_back_version=state.active_version,
        aborted_rebuild=state.rebuilding_version,
        canceled_tasks=ended["canceled"],
        stopping_tasks=ended["stopping"],
        restored_tasks=backfilled,
    )
