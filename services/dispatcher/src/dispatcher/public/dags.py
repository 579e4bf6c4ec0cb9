"""`/v1/dags`: deploy (and redeploy), inspect, list versions, roll back, start source runs."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_400_BAD_REQUEST,
    HTTP_422_UNPROCESSABLE_ENTITY,
)
from pydantic import ValidationError

from dispatcher.lifecycle.deploy import deploy_dag, deploy_response
from dispatcher.lifecycle.rollback import rollback_dag
from dispatcher.lifecycle.status import dag_status
from dispatcher.notifications import Notifications
from dispatcher.repositories import dags as dags_repo
from dispatcher.repositories import lifecycle as lifecycle_repo
from dispatcher.repositories import tasks as tasks_repo
from trace_core.auth.litestar import require_role
from trace_core.auth.principal import Principal
from trace_core.contracts.lifecycle import RollbackRequest
from trace_core.dag import DagConfigError, load_dag_yaml
from trace_core.db.pool import Pool

Req = Request[Principal, None, State]

REMATERIALIZE = {"full": True, "none": False}


class DagController(Controller):
    path = "/v1/dags"
    tags = ["dags"]

    @post(
        "",
        guards=[require_role("writer")],
        status_code=HTTP_201_CREATED,
        summary="Deploy a DAG (the body is its YAML): a new DAG, or a new version of a deployed one",
        description="A redeploy rebuilds the changed jobs and everything downstream beside the serving version, "
        "then cuts over; `?rematerialize=none` serves the new version at once, continuing the changed jobs' data "
        "instead of rebuilding it. 201 with the new version; 200 when the YAML deploys nothing new.",
    )
    async def deploy(
        self, request: Req, state: State, rematerialize: FromQuery[str | None] = None
    ) -> Response[dict[str, Any]]:
        if rematerialize is not None and rematerialize not in REMATERIALIZE:
            raise ClientException(
                detail=f"rematerialize: {rematerialize!r} is not one of {sorted(REMATERIALIZE)}",
                status_code=HTTP_400_BAD_REQUEST,
            )
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
            result = await deploy_dag(
                conn, request.user, text, config, rematerialize=REMATERIALIZE[rematerialize or "full"]
            )
        notifications: Notifications = state.notifications
        notifications.publish("trace_tasks")
        return Response(
            deploy_response(result), status_code=HTTP_200_OK if result.status == "unchanged" else HTTP_201_CREATED
        )

    @get("", guards=[require_role("reader")], summary="DAGs of the caller's org")
    async def list_dags(self, request: Req, state: State) -> list[dict[str, Any]]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            return await dags_repo.list_dags(conn, request.user.org_id)

    @get(
        "/{dag_name:str}",
        guards=[require_role("reader")],
        summary="A DAG: active version, a rebuild in progress with its progress per job, version history",
    )
    async def get_dag(self, request: Req, state: State, dag_name: FromPath[str]) -> dict[str, Any]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            status = await dag_status(conn, request.user.org_id, dag_name)
        if status is None:
            raise NotFoundException(f"no DAG {dag_name!r}")
        return status

    @get("/{dag_name:str}/versions", guards=[require_role("reader")], summary="A DAG's versions, newest first")
    async def versions(self, request: Req, state: State, dag_name: FromPath[str]) -> list[dict[str, Any]]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            dag = await dags_repo.dag_by_name(conn, request.user.org_id, dag_name)
            if dag is None:
                raise NotFoundException(f"no DAG {dag_name!r}")
            return await lifecycle_repo.version_history(conn, dag["dag_id"])

    @post(
        "/{dag_name:str}/rollback",
        guards=[require_role("writer")],
        status_code=HTTP_200_OK,
        summary="Restore the previous version (or `to_version`) and its pointer set; abort a rebuild",
        description='Body (optional): `{"to_version": N}`. The rolled-back version\'s waiting tasks are '
        "canceled and its running ones told to stop at their next heartbeat.",
    )
    async def rollback(self, request: Req, state: State, dag_name: FromPath[str]) -> dict[str, Any]:
        body = await request.body()
        try:
            wanted = RollbackRequest.model_validate_json(body) if body.strip() else RollbackRequest()
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            raise ClientException(detail=f"{where}: {problem['msg']}", status_code=HTTP_400_BAD_REQUEST) from None
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            result = await rollback_dag(conn, request.user, dag_name, wanted.to_version)
        notifications: Notifications = state.notifications
        notifications.publish("trace_tasks")
        return {
            "dag": result.dag,
            "active_version": result.active_version,
            "rolled_back_version": result.rolled_back_version,
            "aborted_rebuild": result.aborted_rebuild,
            "canceled_tasks": result.canceled_tasks,
            "stopping_tasks": result.stopping_tasks,
            "restored_tasks": result.restored_tasks,
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
