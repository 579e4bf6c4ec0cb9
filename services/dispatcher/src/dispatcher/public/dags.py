"""`/v1/dags`: deploy, list and inspect DAGs, start source runs."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_422_UNPROCESSABLE_ENTITY

from dispatcher.lifecycle.deploy import deploy_dag, deploy_response
from dispatcher.notifications import Notifications
from dispatcher.repositories import dags as dags_repo
from dispatcher.repositories import tasks as tasks_repo
from trace_core.auth.litestar import require_role
from trace_core.auth.principal import Principal
from trace_core.dag import DagConfigError, load_dag_yaml
from trace_core.db.pool import Pool

Req = Request[Principal, None, State]


class DagController(Controller):
    path = "/v1/dags"
    tags = ["dags"]

    @post(
        "",
        guards=[require_role("writer")],
        status_code=HTTP_201_CREATED,
        summary="Deploy a DAG: the body is its YAML",
    )
    async def deploy(self, request: Req, state: State) -> dict[str, Any]:
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientException(detail="the body must be the DAG YAML in UTF-8", status_code=400) from None
        try:
            config = load_dag_yaml(text, source="dag.yaml")
        except DagConfigError as error:
            raise ClientException(
                detail=f"the DAG is not valid: {len(error.issues)} problem(s); first: "
                f"line {error.issues[0].line}: {error.issues[0].field}: {error.issues[0].message}",
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                extra=[{"line": i.line, "field": i.field, "message": i.message} for i in error.issues],
            ) from None
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            result = await deploy_dag(conn, request.user, text, config)
        notifications: Notifications = state.notifications
        notifications.publish("trace_tasks")
        return deploy_response(result)

    @get("", guards=[require_role("reader")], summary="DAGs of the caller's org")
    async def list_dags(self, request: Req, state: State) -> list[dict[str, Any]]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            return await dags_repo.list_dags(conn, request.user.org_id)

    @get("/{dag_name:str}", guards=[require_role("reader")], summary="A DAG: active version, jobs and datasets")
    async def get_dag(self, request: Req, state: State, dag_name: FromPath[str]) -> dict[str, Any]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            dag = await dags_repo.dag_by_name(conn, request.user.org_id, dag_name)
            if dag is None:
                raise NotFoundException(f"no DAG {dag_name!r}")
            jobs = await dags_repo.dag_jobs(conn, dag["active_version_id"])
            datasets = await dags_repo.dag_datasets(conn, dag["dag_id"], dag["active_pointer_set_id"])
        return {
            "dag": dag_name,
            "dag_id": dag["dag_id"],
            "active_version": dag["active_version"],
            "rebuilding_version": None,
            "created_at": dag["created_at"],
            "jobs": jobs,
            "datasets": datasets,
        }

    @post(
        "/{dag_name:str}/jobs/{job_name:str}/runs",
        guards=[require_role("writer")],
        status_code=HTTP_202_ACCEPTED,
        summary="Start a source job's run, or restart it (a new attempt of the same task)",
    )
    async def start_run(
        self, request: Req, state: State, dag_name: FromPath[str], job_name: FromPath[str]
    ) -> dict[str, Any]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn, conn.transaction():
            job = await tasks_repo.source_job(conn, request.user.org_id, dag_name, job_name)
            if job is None:
                raise NotFoundException(f"no job {job_name!r} in DAG {dag_name!r}")
            if job["activation"] != "source":
                raise ClientException(
                    detail=f"job {job_name!r} is reactive: its tasks come from its inputs' events, not from runs",
                    status_code=409,
                )
            run = await tasks_repo.latest_source_run(conn, job["job_id"])
            if run is None:
                task_id = await tasks_repo.insert_source_run(
                    conn,
                    org_id=job["org_id"],
                    dag_id=job["dag_id"],
                    version_id=job["active_version_id"],
                    job_id=job["job_id"],
                    runtime=job["runtime"],
                    max_attempts=job["max_attempts"],
                )
                action = "started"
            elif run["status"] in {"Queued", "Dispatched"}:
                task_id, action = run["task_id"], "already starting"
            elif run["status"] == "Running":
                await tasks_repo.restart_running_source_run(conn, run["task_id"], job["max_attempts"])
                task_id, action = run["task_id"], "restarted"
            else:
                await tasks_repo.reopen_source_run(conn, run["task_id"], job["max_attempts"])
                task_id, action = run["task_id"], "restarted"
        notifications: Notifications = state.notifications
        notifications.publish("trace_tasks")
        return {"task_id": task_id, "run": action}
