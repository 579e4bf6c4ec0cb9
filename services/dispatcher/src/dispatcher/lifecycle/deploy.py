"""The first deploy of a DAG: version 1, its jobs, registry rows, first dataset versions, pointer set, runs.

Later deploys of an existing DAG (diff, rematerialize, cutover) belong to the deploy lifecycle (SPEC §6);
until it lands they are refused with 409 and a message saying so.
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
from litestar.status_codes import HTTP_409_CONFLICT, HTTP_422_UNPROCESSABLE_ENTITY

from dispatcher.repositories import dags as dags_repo
from dispatcher.repositories import datasets as datasets_repo
from dispatcher.repositories import tasks as tasks_repo
from trace_core.auth.principal import Principal
from trace_core.dag.config import Activation, DagConfig, WriteMode
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
    jobs: list[str]
    datasets: list[DeployedDataset] = field(default_factory=list)
    source_runs: dict[str, UUID] = field(default_factory=dict)


def _conflict(detail: str) -> HTTPException:
    return ClientException(detail=detail, status_code=HTTP_409_CONFLICT)


def _unprocessable(detail: str, field_path: str) -> HTTPException:
    return ClientException(
        detail=detail, status_code=HTTP_422_UNPROCESSABLE_ENTITY, extra=[{"field": field_path, "message": detail}]
    )


async def deploy_dag(conn: Connection, principal: Principal, source_yaml: str, config: DagConfig) -> DeployResult:
    """Store and start version 1 of a new DAG in one transaction."""
    try:
        async with conn.transaction():
            return await _deploy_first_version(conn, principal, source_yaml, config)
    except psycopg.errors.UniqueViolation as error:
        # a concurrent deploy of the same DAG, or of a DAG publishing the same name, won the race
        raise _conflict(f"a concurrent deploy conflicts with this one: {error.diag.message_detail}") from None


async def _deploy_first_version(
    conn: Connection, principal: Principal, source_yaml: str, config: DagConfig
) -> DeployResult:
    org_id = principal.org_id
    existing = await dags_repo.dag_by_name(conn, org_id, config.dag)
    if existing is not None:
        raise _conflict(
            f"DAG {config.dag!r} is already deployed (version {existing['active_version']}); redeploying an "
            "existing DAG (diff, rebuild, cutover) is not available yet"
        )
    _refuse_unsupported_outputs(config)
    cross_dag = await _resolve_cross_dag_inputs(conn, principal, config)
    taken = await dags_repo.dataset_names_taken(conn, org_id, [p.dataset for p in config.publish], None)
    if taken:
        row = taken[0]
        index = next(i for i, p in enumerate(config.publish) if p.dataset == row["dataset_name"])
        raise ClientException(
            detail=f"publish.{index}.dataset: {row['dataset_name']!r} is already produced by DAG "
            f"{row['dag_name']!r}; a published name has a single producer",
            status_code=HTTP_409_CONFLICT,
        )

    dag_id = await dags_repo.insert_dag(conn, org_id, config.dag)
    if dag_id is None:
        raise _conflict(f"DAG {config.dag!r} was deployed concurrently; retry to see it")
    canonical = config.model_dump(mode="json", by_alias=True)
    version_id = await dags_repo.insert_dag_version(
        conn,
        org_id=org_id,
        dag_id=dag_id,
        version=1,
        status="active",
        source_yaml=source_yaml,
        config=canonical,
        config_hash=hashlib.sha256(source_yaml.encode()).digest(),
        deployed_by=principal.user_id,
    )
    result = DeployResult(dag=config.dag, dag_id=dag_id, version=1, dag_version_id=version_id, jobs=[])
    job_ids: dict[str, UUID] = {}
    outputs: dict[tuple[str, int], tuple[UUID, UUID]] = {}
    order = TopologicalSorter({name: config.upstream_jobs(name) for name in config.jobs}).static_order()
    for name in order:
        job = config.jobs[name]
        job_id = await dags_repo.insert_job(
            conn,
            org_id=org_id,
            dag_id=dag_id,
            job_name=name,
            activation=job.activation.value,
            runtime=job.runtime,
            operator=job.operator,
            config=job.config,
            execution_strategy=job.execution_strategy,
            update_strategy=job.update_strategy.value,
            unique_key=sorted({key for output in job.outputs for key in output.unique_key}),
            materialization_hash=materialization_fingerprint(job),
            version_id=version_id,
        )
        job_ids[name] = job_id
        result.jobs.append(name)
        await dags_repo.insert_dag_version_job(
            conn,
            version_id=version_id,
            dag_id=dag_id,
            job_name=name,
            job_id=job_id,
            rebuilds=True,
            worker_pool=job.worker_pool,
            max_concurrency=job.scaling.max_concurrency,
            timeout_s=job.timeout_s,
            max_attempts=job.max_attempts,
        )
        for index in range(job.output_count):
            output = job.outputs[index] if job.outputs else None
            storage = output.storage.value if output else "none"
            dataset_uuid = await dags_repo.insert_dataset(
                conn,
                org_id=org_id,
                dag_id=dag_id,
                job_name=name,
                output_index=index,
                storage=storage,
                format=output.effective_format.value if output and output.effective_format else None,
                write_mode=output.effective_write_mode.value if output and output.effective_write_mode else None,
            )
            dataset_version = uuid.uuid4()
            await dags_repo.insert_dataset_version(
                conn,
                dataset_version=dataset_version,
                org_id=org_id,
                dataset_uuid=dataset_uuid,
                job_id=job_id,
                storage_location=_storage_location(storage, org_id, dataset_uuid, dataset_version),
            )
            outputs[(name, index)] = (dataset_uuid, dataset_version)
            result.datasets.append(DeployedDataset(name, index, dataset_uuid, dataset_version, storage))
        for input_index, item in enumerate(job.inputs):
            ref = item.from_
            if ref.job is not None:
                upstream_dataset, _ = outputs[(ref.job, ref.output)]
                upstream_job: UUID | None = job_ids[ref.job]
            else:
                upstream_dataset, upstream_job = cross_dag[(name, input_index)], None
            await dags_repo.insert_job_input(
                conn,
                job_id=job_id,
                input_index=input_index,
                dataset_uuid=upstream_dataset,
                upstream_job_id=upstream_job,
            )

    for entry in config.publish:
        dataset_uuid, _ = outputs[(entry.job, entry.output)]
        await dags_repo.publish_dataset(conn, dataset_uuid, entry.dataset)
        for deployed in result.datasets:
            if deployed.dataset_uuid == dataset_uuid:
                deployed.dataset_name = entry.dataset

    pointer_set_id = await dags_repo.insert_pointer_set(conn, org_id, dag_id, version_id)
    for dataset_uuid, dataset_version in outputs.values():
        await dags_repo.insert_pointer_set_entry(conn, pointer_set_id, dataset_uuid, dataset_version)
    await dags_repo.activate_dag(conn, dag_id, version_id, pointer_set_id)

    for pool_name, slots in config.worker_pools.items():
        for slot_index, slot in enumerate(slots):
            await dags_repo.insert_slot(
                conn,
                org_id=org_id,
                dag_id=dag_id,
                pool_name=pool_name,
                slot_index=slot_index,
                env=slot.env,
                secret_env=slot.secret_env,
            )

    for name, job in config.jobs.items():
        if job.activation is Activation.SOURCE:
            task_id = await tasks_repo.insert_source_run(
                conn,
                org_id=org_id,
                dag_id=dag_id,
                version_id=version_id,
                job_id=job_ids[name],
                runtime=job.runtime,
                max_attempts=job.max_attempts,
            )
            if task_id is not None:
                result.source_runs[name] = task_id
    log.info("dispatcher.dag.deployed", dag=config.dag, version=1, jobs=len(result.jobs), user=principal.user_name)
    return result


def _refuse_unsupported_outputs(config: DagConfig) -> None:
    for name, job in config.jobs.items():
        for index, output in enumerate(job.outputs):
            if output.effective_write_mode is WriteMode.BUFFERED:
                path = f"jobs.{name}.outputs.{index}.write_mode"
                raise _unprocessable(
                    f"{path}: 'buffered' is not supported yet (it needs the buffered sink); use write_mode: direct",
                    path,
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
        "changed_jobs": result.jobs,
        "rebuild_jobs": result.jobs,
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
