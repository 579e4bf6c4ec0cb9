"""Deploys (SPEC §6). The first deploy stores version 1 and starts it. A redeploy diffs the YAML against the
active version: unchanged jobs keep their job rows (so their dataset versions and operator state), the jobs whose
materialization-affecting fields changed and everything downstream of them get new job rows and new dataset
versions. With something to rebuild, the new version rebuilds beside the serving one (`lifecycle/cutover.py`
switches it in); with nothing to rebuild, or `?rematerialize=none`, it is served at once. Every state change is
a compare-and-swap on the DAG row, so of two concurrent deploys one wins and the other gets 409.

docs/lifecycle.md explains the model and the decisions.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any
from uuid import UUID

import psycopg
from litestar.exceptions import ClientException, HTTPException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY

from dispatcher.lifecycle import serving
from dispatcher.repositories import dags as dags_repo
from dispatcher.repositories import datasets as datasets_repo
from dispatcher.repositories import lifecycle as repo
from trace_core.auth.principal import Principal
from trace_core.dag import DagDiff, diff
from trace_core.dag.config import DagConfig, Job, WriteMode
from trace_core.dag.diff import materialization_fingerprint
from trace_core.db.pool import Connection
from trace_core.logging import get_logger
from trace_core.naming import DATA_SCHEMA, dataset_table_name
from trace_core.storage import dataset_version_prefix

log = get_logger(__name__)


@dataclass
class DeployedDataset:
    job: str
    output: int
    dataset_uuid: UUID
    dataset_version: UUID
    storage: str
    dataset_name: str | None = None


@dataclass
class DeployResult:
    dag: str
    dag_id: UUID
    version: int
    dag_version_id: UUID
    status: str  # active (served at once), rebuilding, or unchanged (nothing to deploy)
    rematerialize: bool = True
    changed_jobs: list[str] = field(default_factory=list)
    rebuild_jobs: list[str] = field(default_factory=list)
    continued_jobs: list[str] = field(default_factory=list)
    removed_jobs: list[str] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)
    superseded_version: int | None = None
    datasets: list[DeployedDataset] = field(default_factory=list)
    source_runs: dict[str, UUID] = field(default_factory=dict)


def _conflict(detail: str) -> HTTPException:
    return ClientException(detail=detail, status_code=HTTP_409_CONFLICT)


def _unprocessable(detail: str, field_path: str) -> HTTPException:
    return ClientException(
        detail=detail, status_code=HTTP_422_UNPROCESSABLE_ENTITY, extra=[{"field": field_path, "message": detail}]
    )


async def deploy_dag(
    conn: Connection, principal: Principal, source_yaml: str, config: DagConfig, *, rematerialize: bool = True
) -> DeployResult:
    """Deploy `config` in one transaction: version 1 of a new DAG, or a redeploy of an existing one."""
    try:
        async with conn.transaction():
            if not rematerialize or _reads_other_dags(config):
                # the continued jobs take over their predecessors' pending events, and a new DAG's jobs get the
                # events other DAGs' datasets already have: no router pass may be routing them under the old
                # subscriptions meanwhile
                await repo.lock_routing(conn)
            state = await repo.dag_state(conn, principal.org_id, config.dag)
            if state is None:
                if not rematerialize:
                    raise ClientException(
                        detail=f"rematerialize: 'none' continues a deployed version; DAG {config.dag!r} is not "
                        "deployed yet (its first deploy builds everything)",
                        status_code=HTTP_400_BAD_REQUEST,
                    )
                return await _deploy_first_version(conn, principal, source_yaml, config)
            return await _redeploy(conn, principal, source_yaml, config, state, rematerialize)
    except serving.PublishConflictError as error:
        raise ClientException(
            detail=str(error), status_code=HTTP_409_CONFLICT, extra=[{"field": error.field}]
        ) from None
    except psycopg.errors.UniqueViolation as error:
        # a concurrent deploy of the same DAG, or of a DAG publishing the same name, won the race
        raise _conflict(f"a concurrent deploy conflicts with this one: {error.diag.message_detail}") from None


@dataclass
class _Build:
    """A version being assembled: the job row of every job, and the dataset version of every output."""

    org_id: UUID
    dag_id: UUID
    version_id: UUID
    version: int
    config: DagConfig
    cross_dag: dict[tuple[str, int], UUID]
    job_ids: dict[str, UUID] = field(default_factory=dict)
    outputs: dict[tuple[str, int], tuple[UUID, UUID]] = field(default_factory=dict)
    new_rows: set[str] = field(default_factory=set)

    def wiring(self, name: str) -> tuple[tuple[UUID, UUID | None], ...]:
        """(dataset_uuid, upstream job row) of each input of `name`, whose upstream jobs are already placed."""
        wired: list[tuple[UUID, UUID | None]] = []
        for index, item in enumerate(self.config.jobs[name].inputs):
            ref = item.from_
            if ref.job is not None:
                wired.append((self.outputs[(ref.job, ref.output)][0], self.job_ids[ref.job]))
            else:
                wired.append((self.cross_dag[(name, index)], None))
        return tuple(wired)


def _order(config: DagConfig) -> list[str]:
    return list(TopologicalSorter({name: config.upstream_jobs(name) for name in config.jobs}).static_order())


async def _deploy_first_version(
    conn: Connection, principal: Principal, source_yaml: str, config: DagConfig
) -> DeployResult:
    org_id = principal.org_id
    _refuse_unsupported_outputs(config)
    cross_dag = await _resolve_cross_dag_inputs(conn, principal, config)
    await serving.check_names_free(conn, org_id, None, config)
    dag_id = await dags_repo.insert_dag(conn, org_id, config.dag)
    if dag_id is None:
        raise _conflict(f"DAG {config.dag!r} was deployed concurrently; retry to see it")
    build = _Build(org_id, dag_id, uuid.uuid4(), 1, config, cross_dag)
    await _insert_version(conn, principal, source_yaml, build, "active", None, True, {})
    for name in _order(config):
        await _new_job_row(conn, build, name, rebuilds=True, predecessor=None)
    pointer_set_id = uuid.uuid4()
    await repo.insert_version_pointer_set(conn, pointer_set_id, org_id, dag_id, build.version_id, None)
    await dags_repo.activate_dag(conn, dag_id, build.version_id, pointer_set_id)
    await serving.publish_version(conn, org_id, dag_id, config)
    await serving.sync_worker_pools(conn, org_id, dag_id, config)
    runs = await serving.start_source_runs(
        conn, org_id, dag_id, build.version_id, config, build.job_ids, set(config.jobs)
    )
    # jobs reading another DAG's dataset start from its start, as a job added by a redeploy does
    backfilled = await repo.backfill_tasks(
        conn, build.version_id, list(build.job_ids.values()), held_only=True, after=0, through=None
    )
    log.info(
        "dispatcher.dag.deployed",
        dag=config.dag,
        version=1,
        jobs=len(config.jobs),
        tasks_from_other_dags=backfilled,
        user=principal.user_name,
    )
    jobs = sorted(config.jobs)
    return DeployResult(
        dag=config.dag,
        dag_id=dag_id,
        version=1,
        dag_version_id=build.version_id,
        status="active",
        changed_jobs=jobs,
        rebuild_jobs=jobs,
        datasets=_datasets(build),
        source_runs=runs,
    )


async def _redeploy(
    conn: Connection,
    principal: Principal,
    source_yaml: str,
    config: DagConfig,
    state: repo.DagState,
    rematerialize: bool,
) -> DeployResult:
    org_id, dag_id = principal.org_id, state.dag_id
    active = serving.stored_config(state.active_config)
    rebuilding = serving.stored_config(state.rebuilding_config) if state.rebuilding_config else None
    if rebuilding is not None and diff(rebuilding, config).is_empty:
        assert state.rebuilding_version_id is not None and state.rebuilding_version is not None
        return DeployResult(config.dag, dag_id, state.rebuilding_version, state.rebuilding_version_id, "unchanged")
    changes = diff(active, config)
    if rebuilding is None and changes.is_empty:
        return DeployResult(config.dag, dag_id, state.active_version, state.active_version_id, "unchanged")

    _refuse_unsupported_outputs(config)
    cross_dag = await _resolve_cross_dag_inputs(conn, principal, config)
    await serving.check_names_free(conn, org_id, dag_id, config)
    await serving.check_readers_kept(conn, dag_id, config)
    await _refuse_output_changes(conn, dag_id, active, config, changes.rebuild, rematerialize)
    rebuild = rematerialize and bool(changes.rebuild)
    build = _Build(org_id, dag_id, uuid.uuid4(), await repo.next_version(conn, dag_id), config, cross_dag)
    pointer_set_id = uuid.uuid4()

    # The compare-and-swap comes first: it locks the DAG row, so a concurrent deploy, cutover or rollback of this
    # DAG either finished before (and this one sees its effect and fails) or waits for this one.
    if rebuild:
        swapped = await repo.start_rebuild(
            conn, dag_id, build.version_id, state.active_pointer_set_id, state.rebuilding_version_id
        )
    else:
        swapped = await repo.swap_active(
            conn,
            dag_id,
            build.version_id,
            pointer_set_id,
            state.active_pointer_set_id,
            state.rebuilding_version_id,
        )
    if not swapped:
        raise _conflict(
            f"DAG {config.dag!r} changed while this deploy was prepared (a concurrent deploy, cutover or "
            "rollback); deploy again to diff against what is served now"
        )
    if state.rebuilding_version_id is not None:
        await repo.set_version_status(conn, state.rebuilding_version_id, "abandoned")
    if not rebuild:
        await repo.set_version_status(conn, state.active_version_id, "retired")

    summary = _summary(changes, rematerialize, state.rebuilding_version)
    await _insert_version(
        conn,
        principal,
        source_yaml,
        build,
        "rebuilding" if rebuild else "active",
        state.active_version_id,
        rematerialize,
        summary,
    )
    active_jobs = await repo.version_jobs(conn, state.active_version_id)
    superseded = (
        await repo.version_jobs(conn, state.rebuilding_version_id) if state.rebuilding_version_id is not None else {}
    )
    # a rebuild may keep the superseded rebuild's job rows that build exactly what it needs
    candidates = superseded if rebuild else {}
    reused: list[str] = []
    for name in _order(config):
        job = config.jobs[name]
        if name not in changes.rebuild:
            await _keep_job_row(conn, build, name, active_jobs[name], rebuilds=False)
            continue
        candidate = candidates.get(name)
        if (
            candidate is not None
            and candidate.rebuilds
            and candidate.materialization_hash == materialization_fingerprint(job)
            and candidate.inputs == build.wiring(name)
        ):
            # the superseded rebuild already builds exactly this: keep its progress
            await _keep_job_row(conn, build, name, candidate, rebuilds=True)
            reused.append(name)
            continue
        await _new_job_row(
            conn, build, name, rebuilds=rematerialize, predecessor=None if rematerialize else active_jobs.get(name)
        )
    await repo.insert_version_pointer_set(
        conn, pointer_set_id, org_id, dag_id, build.version_id, state.active_pointer_set_id
    )

    served_ids = set(build.job_ids.values())
    # the superseded rebuild's own jobs that this version does not keep stop here
    leaving = [job.job_id for job in superseded.values() if job.rebuilds and job.job_id not in served_ids]
    await repo.end_live_tasks(conn, leaving, f"superseded by version {build.version} before its cutover")
    kept = [build.job_ids[name] for name in config.jobs if name not in build.new_rows]
    await repo.retag_live_tasks(conn, kept, build.version_id)

    if rebuild:
        await repo.begin_rebuild_round(conn, build.version_id, 0)
        await serving.sync_worker_pools(conn, org_id, dag_id, config, still_served=active)
    else:
        retired = [job.job_id for job in active_jobs.values() if job.job_id not in served_ids]
        if not rematerialize:
            await _continue_jobs(conn, build, active_jobs)
        # jobs leaving service keep their waiting tasks (a rollback may bring them back); a source stops
        await repo.end_live_tasks(
            conn, retired, f"retired: version {build.version} no longer runs this job", sources_only=True
        )
        await serving.publish_version(conn, org_id, dag_id, config)
        await serving.sync_worker_pools(conn, org_id, dag_id, config)
    runs = await serving.start_source_runs(
        conn, org_id, dag_id, build.version_id, config, build.job_ids, build.new_rows
    )
    log.info(
        "dispatcher.dag.redeployed",
        dag=config.dag,
        version=build.version,
        status="rebuilding" if rebuild else "active",
        rebuild=sorted(changes.rebuild) if rebuild else [],
        reused=reused,
        user=principal.user_name,
    )
    return DeployResult(
        dag=config.dag,
        dag_id=dag_id,
        version=build.version,
        dag_version_id=build.version_id,
        status="rebuilding" if rebuild else "active",
        rematerialize=rematerialize,
        changed_jobs=summary["changed_jobs"],
        rebuild_jobs=summary["rebuild_jobs"],
        continued_jobs=summary["continued_jobs"],
        removed_jobs=summary["removed_jobs"],
        changes=summary["changes"],
        superseded_version=state.rebuilding_version,
        datasets=_datasets(build),
        source_runs=runs,
    )


def _summary(changes: DagDiff, rematerialize: bool, superseded: int | None) -> dict[str, Any]:
    """What a deploy changed, as the version records it and the response says it."""
    fields = {**changes.materialization_changed, **changes.execution_changed}
    rebuilt = sorted(changes.rebuild)
    return {
        "changed_jobs": sorted(fields),
        "added_jobs": sorted(changes.added),
        "removed_jobs": sorted(changes.removed),
        "changes": {name: list(fields[name]) for name in sorted(fields)},
        "rebuild_jobs": rebuilt if rematerialize else [],
        "continued_jobs": [] if rematerialize else sorted(set(rebuilt) - changes.added),
        "publish_changed": changes.publish_changed,
        "worker_pools_changed": sorted(changes.worker_pools_changed),
        "superseded_version": superseded,
    }


async def _insert_version(
    conn: Connection,
    principal: Principal,
    source_yaml: str,
    build: _Build,
    status: str,
    parent_version_id: UUID | None,
    rematerialize: bool,
    changes: dict[str, Any],
) -> None:
    await dags_repo.insert_dag_version(
        conn,
        dag_version_id=build.version_id,
        org_id=build.org_id,
        dag_id=build.dag_id,
        version=build.version,
        status=status,
        source_yaml=source_yaml,
        config=build.config.model_dump(mode="json", by_alias=True, exclude_unset=True),
        config_hash=hashlib.sha256(source_yaml.encode()).digest(),
        rematerialize=rematerialize,
        parent_version_id=parent_version_id,
        changes=changes,
        deployed_by=principal.user_id,
    )


async def _insert_version_job(conn: Connection, build: _Build, name: str, job_id: UUID, rebuilds: bool) -> None:
    job = build.config.jobs[name]
    await dags_repo.insert_dag_version_job(
        conn,
        version_id=build.version_id,
        dag_id=build.dag_id,
        job_name=name,
        job_id=job_id,
        rebuilds=rebuilds,
        worker_pool=job.worker_pool,
        max_concurrency=job.scaling.max_concurrency,
        timeout_s=job.timeout_s,
        max_attempts=job.max_attempts,
    )


async def _keep_job_row(conn: Connection, build: _Build, name: str, row: repo.VersionJob, rebuilds: bool) -> None:
    """The version uses an existing job row, with this deploy's execution settings."""
    build.job_ids[name] = row.job_id
    for index, output in row.outputs.items():
        build.outputs[(name, index)] = (output.dataset_uuid, output.dataset_version)
    await _insert_version_job(conn, build, name, row.job_id, rebuilds)


async def _new_job_row(
    conn: Connection, build: _Build, name: str, *, rebuilds: bool, predecessor: repo.VersionJob | None
) -> None:
    """A new job row with a new dataset version per output. With a `predecessor` (?rematerialize=none) each
    version continues the predecessor's storage instead of starting empty."""
    job = build.config.jobs[name]
    wiring = build.wiring(name)
    job_id = await dags_repo.insert_job(
        conn,
        org_id=build.org_id,
        dag_id=build.dag_id,
        job_name=name,
        activation=job.activation.value,
        runtime=job.task_runtime,
        operator=job.operator,
        config=job.config,
        execution_strategy=job.execution_strategy,
        update_strategy=job.update_strategy.value,
        unique_key=sorted({key for output in job.outputs for key in output.unique_key}),
        materialization_hash=materialization_fingerprint(job),
        version_id=build.version_id,
    )
    build.job_ids[name] = job_id
    build.new_rows.add(name)
    await _insert_version_job(conn, build, name, job_id, rebuilds)
    for index in range(job.output_count):
        output = job.outputs[index] if job.outputs else None
        storage = output.storage.value if output else "none"
        existing = await repo.dataset_of_output(conn, build.dag_id, name, index)
        if existing is not None:
            dataset_uuid: UUID = existing["dataset_uuid"]
        else:
            dataset_uuid = await dags_repo.insert_dataset(
                conn,
                org_id=build.org_id,
                dag_id=build.dag_id,
                job_name=name,
                output_index=index,
                storage=storage,
                format=output.effective_format.value if output and output.effective_format else None,
                write_mode=output.effective_write_mode.value if output and output.effective_write_mode else None,
            )
        dataset_version = uuid.uuid4()
        continued = predecessor.outputs.get(index) if predecessor is not None else None
        await dags_repo.insert_dataset_version(
            conn,
            dataset_version=dataset_version,
            org_id=build.org_id,
            dataset_uuid=dataset_uuid,
            job_id=job_id,
            storage_location=(
                continued.storage_location
                if continued is not None
                else _storage_location(storage, build.org_id, dataset_uuid, dataset_version)
            ),
            continues_version=continued.dataset_version if continued is not None else None,
        )
        build.outputs[(name, index)] = (dataset_uuid, dataset_version)
    for input_index, (dataset_uuid, upstream_job_id) in enumerate(wiring):
        await dags_repo.insert_job_input(
            conn, job_id=job_id, input_index=input_index, dataset_uuid=dataset_uuid, upstream_job_id=upstream_job_id
        )


async def _continue_jobs(conn: Connection, build: _Build, active_jobs: dict[str, repo.VersionJob]) -> None:
    """?rematerialize=none: each new job row continues the job row it replaces. It takes over the events that
    one had not finished, and its operator state; the replaced row's pending work ends."""
    for name in sorted(build.new_rows):
        predecessor = active_jobs.get(name)
        if predecessor is None:
            continue  # an added job starts from now on, with nothing to continue
        job_id = build.job_ids[name]
        taken = await repo.take_over_tasks(conn, predecessor.job_id, job_id, build.version_id)
        await repo.copy_operator_state(conn, predecessor.job_id, job_id)
        await repo.end_live_tasks(
            conn, [predecessor.job_id], f"continued by version {build.version} (rematerialize=none)"
        )
        log.info("dispatcher.dag.job_continued", job=name, version=build.version, tasks_taken_over=taken)


def _datasets(build: _Build) -> list[DeployedDataset]:
    names = {(p.job, p.output): p.dataset for p in build.config.publish}
    datasets = []
    for (job, index), (dataset_uuid, dataset_version) in sorted(build.outputs.items()):
        spec = build.config.jobs[job]
        output = spec.outputs[index] if spec.outputs else None
        storage = output.storage.value if output else "none"
        datasets.append(DeployedDataset(job, index, dataset_uuid, dataset_version, storage, names.get((job, index))))
    return datasets


def _reads_other_dags(config: DagConfig) -> bool:
    return any(item.from_.dataset is not None for job in config.jobs.values() for item in job.inputs)


def _refuse_unsupported_outputs(config: DagConfig) -> None:
    for name, job in config.jobs.items():
        for index, output in enumerate(job.outputs):
            if output.effective_write_mode is WriteMode.BUFFERED:
                path = f"jobs.{name}.outputs.{index}.write_mode"
                raise _unprocessable(
                    f"{path}: 'buffered' is not supported yet (it needs the buffered sink); use write_mode: direct",
                    path,
                )


def _storage_of(job: Job, index: int) -> tuple[str, str | None, str | None]:
    output = job.outputs[index] if job.outputs else None
    if output is None:
        return "none", None, None
    return (
        output.storage.value,
        output.effective_format.value if output.effective_format else None,
        output.effective_write_mode.value if output.effective_write_mode else None,
    )


async def _refuse_output_changes(
    conn: Connection, dag_id: UUID, active: DagConfig, config: DagConfig, rebuilt: frozenset[str], rematerialize: bool
) -> None:
    """An output keeps how it is stored for the life of its dataset: the registry row (which readers of every
    version use) says postgres or s3. With ?rematerialize=none the continued table also keeps its unique key."""
    for name in sorted(rebuilt):
        job = config.jobs[name]
        for index in range(job.output_count):
            existing = await repo.dataset_of_output(conn, dag_id, name, index)
            if existing is None:
                continue
            stored = (existing["storage"], existing["format"], existing["write_mode"])
            wanted = _storage_of(job, index)
            path = f"jobs.{name}.outputs.{index}" if job.outputs else f"jobs.{name}.outputs"
            if stored != wanted:
                described = "events only" if stored[0] == "none" else "/".join(str(p) for p in stored if p)
                raise _unprocessable(
                    f"{path}: this output's dataset is stored as {described}, and a dataset keeps its storage "
                    "across versions; give the new storage to a new output or job (a new dataset)",
                    path,
                )
            before = active.jobs.get(name)
            if (
                not rematerialize
                and before is not None
                and index < len(before.outputs)
                and before.outputs[index].unique_key != job.outputs[index].unique_key
            ):
                raise _unprocessable(
                    f"{path}.unique_key: rematerialize=none keeps writing the existing table, whose unique "
                    "key cannot change; deploy without rematerialize=none to rebuild it",
                    f"{path}.unique_key",
                )


async def _resolve_cross_dag_inputs(
    conn: Connection, principal: Principal, config: DagConfig
) -> dict[tuple[str, int], UUID]:
    """Dataset uuid of every `from: {dataset: …}` input; a missing and an unreadable dataset look the same."""
    resolved: dict[tuple[str, int], UUID] = {}
    for name, job in config.jobs.items():
        for index, item in enumerate(job.inputs):
            dataset_name = item.from_.dataset
            if dataset_name is None:
                continue
            row = await datasets_repo.readable_by_name(
                conn, principal.org_id, principal.user_id, principal.is_admin, dataset_name
            )
            if row is None:
                path = f"jobs.{name}.inputs.{index}.from.dataset"
                raise _unprocessable(f"{path}: no published dataset {dataset_name!r} that you may read", path)
            if row["dag_name"] == config.dag:
                path = f"jobs.{name}.inputs.{index}.from"
                raise _unprocessable(
                    f"{path}: {dataset_name!r} is published by this DAG; read it with "
                    f"from: {{job: {row['job_name']}, output: {row['output_index']}}}",
                    path,
                )
            resolved[(name, index)] = row["dataset_uuid"]
    return resolved


def _storage_location(storage: str, org_id: UUID, dataset_uuid: UUID, dataset_version: UUID) -> str | None:
    if storage == "s3":
        return dataset_version_prefix(org_id, dataset_uuid, dataset_version)
    if storage == "postgres":
        return f"{DATA_SCHEMA}.{dataset_table_name(dataset_uuid, dataset_version)}"
    return None


def deploy_response(result: DeployResult) -> dict[str, Any]:
    return {
        "dag": result.dag,
        "dag_id": str(result.dag_id),
        "version": result.version,
        "dag_version_id": str(result.dag_version_id),
        "status": result.status,
        "rematerialize": result.rematerialize,
        "changed_jobs": result.changed_jobs,
        "rebuild_jobs": result.rebuild_jobs,
        "continued_jobs": result.continued_jobs,
        "removed_jobs": result.removed_jobs,
        "changes": result.changes,
        "superseded_version": result.superseded_version,
        "datasets": [
            {
                "job": d.job,
                "output": d.output,
                "dataset_uuid": str(d.dataset_uuid),
                "dataset_version": str(d.dataset_version),
                "storage": d.storage,
                "dataset_name": d.dataset_name,
            }
            for d in result.datasets
        ],
        "source_runs": {job: str(task_id) for job, task_id in result.source_runs.items()},
    }
