"""What changes when a version starts or stops being served: published names, worker-pool slots, source runs,
and the tasks of jobs that leave service. Deploy, cutover and rollback call these inside their transactions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from dispatcher.repositories import dags as dags_repo
from dispatcher.repositories import lifecycle as repo
from dispatcher.repositories import tasks as tasks_repo
from trace_core.dag.config import Activation, DagConfig
from trace_core.db.pool import Connection


def stored_config(stored: dict[str, Any]) -> DagConfig:
    """A version's config as `dag_versions.config` holds it. Versions store what was given (`exclude_unset`); those
    stored before held every default too, `output: 0` beside a `dataset` input included, which the model refuses."""
    for job in stored.get("jobs", {}).values():
        for item in job.get("inputs", []):
            ref = item.get("from", {})
            if ref.get("dataset") is not None and ref.get("output") == 0:
                del ref["output"]
    return DagConfig.model_validate(stored)


class PublishConflictError(Exception):
    """What a version publishes conflicts with another DAG: a name it produces (the single-producer rule), or a
    dataset it reads."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def check_names_free(conn: Connection, org_id: UUID, dag_id: UUID | None, config: DagConfig) -> None:
    """Raise `PublishConflictError` for the first name of `config.publish` another DAG publishes."""
    taken = await dags_repo.dataset_names_taken(conn, org_id, [p.dataset for p in config.publish], dag_id)
    if taken:
        row = taken[0]
        index = next(i for i, p in enumerate(config.publish) if p.dataset == row["dataset_name"])
        raise PublishConflictError(
            f"publish.{index}.dataset",
            f"publish.{index}.dataset: {row['dataset_name']!r} is already produced by DAG {row['dag_name']!r}; a "
            "published name has a single producer",
        )


async def check_readers_kept(conn: Connection, dag_id: UUID, config: DagConfig) -> None:
    """Raise `PublishConflictError` when `config` stops publishing a dataset another DAG's serving job reads: that
    reader would silently stop getting data (a DAG never drives another DAG's materialization)."""
    kept = []
    for entry in config.publish:
        dataset = await repo.dataset_of_output(conn, dag_id, entry.job, entry.output)
        if dataset is not None:
            kept.append(dataset["dataset_uuid"])
    read = await repo.unpublished_but_read(conn, dag_id, kept)
    if read is not None:
        raise PublishConflictError(
            "publish",
            f"publish: {read['dataset_name']!r} is read by job {read['reader_job']!r} of DAG {read['reader_dag']!r}; "
            "keep publishing it (from the same job output) until that DAG stops reading it",
        )


async def publish_version(conn: Connection, org_id: UUID, dag_id: UUID, config: DagConfig) -> None:
    """Make the DAG publish exactly `config.publish` (names move, appear and disappear in one transaction)."""
    await check_names_free(conn, org_id, dag_id, config)
    names: dict[UUID, str] = {}
    for entry in config.publish:
        dataset = await repo.dataset_of_output(conn, dag_id, entry.job, entry.output)
        assert dataset is not None, f"{entry.job}.{entry.output} was deployed before it is published"
        names[dataset["dataset_uuid"]] = entry.dataset
    await repo.apply_publish(conn, dag_id, names)


async def sync_worker_pools(
    conn: Connection, org_id: UUID, dag_id: UUID, config: DagConfig, still_served: DagConfig | None = None
) -> None:
    """Slots as `config` defines them, at once (pools are execution-only). Pools only `still_served` (the
    version serving while `config` rebuilds) defines stay as they are until that version leaves service."""
    for pool_name, slots in config.worker_pools.items():
        await repo.upsert_slots(conn, org_id, dag_id, pool_name, [(slot.env, slot.secret_env) for slot in slots])
    sizes = {name: len(slots) for name, slots in config.worker_pools.items()}
    if still_served is not None:
        for name, slots in still_served.worker_pools.items():
            sizes.setdefault(name, len(slots))
    await repo.retire_slots(conn, dag_id, sizes)


async def start_source_runs(
    conn: Connection,
    org_id: UUID,
    dag_id: UUID,
    version_id: UUID,
    config: DagConfig,
    job_ids: dict[str, UUID],
    names: set[str],
) -> dict[str, UUID]:
    """A run for each source job of `names` (new job rows); returns the runs started."""
    runs: dict[str, UUID] = {}
    for name in sorted(names):
        job = config.jobs[name]
        if job.activation is not Activation.SOURCE:
            continue
        task_id = await tasks_repo.insert_source_run(
            conn,
            org_id=org_id,
            dag_id=dag_id,
            version_id=version_id,
            job_id=job_ids[name],
            runtime=job.task_runtime,
            max_attempts=job.max_attempts,
        )
        if task_id is not None:
            runs[name] = task_id
    return runs


async def restore_source_runs(conn: Connection, config: DagConfig, job_ids: dict[str, UUID], names: set[str]) -> None:
    """Source jobs a rollback brings back run again: their newest run restarts (a new attempt of the same task,
    so re-emitted events dedupe) unless it is live or ended Completed."""
    for name in sorted(names):
        job = config.jobs[name]
        if job.activation is not Activation.SOURCE:
            continue
        run = await repo.source_run_to_restore(conn, job_ids[name])
        if run is not None and run["status"] in {"Canceled", "Failed"}:
            await tasks_repo.reopen_source_run(conn, run["task_id"], job.max_attempts)
