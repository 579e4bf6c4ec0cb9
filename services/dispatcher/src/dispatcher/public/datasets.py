"""`/v1/datasets`: the published datasets a caller may read, their versions, and who else may read them.

A dataset that does not exist and one the caller may not read get the same 404, so names do not leak.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY
from pydantic import Field

from dispatcher.repositories import datasets as repo
from trace_core.auth.litestar import require_role
from trace_core.auth.principal import Principal
from trace_core.contracts._base import Contract
from trace_core.db.pool import Connection, Pool
from trace_core.naming import ROLE_NAME

Req = Request[Principal, None, State]


class ReadRoles(Contract):
    """The roles that may read a dataset besides org admins and its DAG's deployers (empty: none)."""

    roles: list[str] = Field(max_length=100)


def _not_found(name: str) -> NotFoundException:
    return NotFoundException(f"no dataset {name!r} that you may read")


async def _describe(conn: Connection, principal: Principal, name: str) -> dict[str, Any]:
    dataset = await repo.readable_by_name(conn, principal.org_id, principal.user_id, principal.is_admin, name)
    if dataset is None:
        raise _not_found(name)
    versions = await repo.versions_of(conn, dataset["dataset_uuid"], dataset["dataset_version"])
    return {
        "dataset": dataset["dataset_name"],
        "dataset_uuid": dataset["dataset_uuid"],
        "producer": {"dag": dataset["dag_name"], "job": dataset["job_name"], "output": dataset["output_index"]},
        "current_version": dataset["dataset_version"],
        "versions": versions,
        "storage": {
            "kind": dataset["storage"],
            "format": dataset["format"],
            "write_mode": dataset["write_mode"],
            "location": dataset["storage_location"],
        },
        "schema": dataset["schema"],
        "read_roles": await repo.read_roles_of(conn, dataset["dataset_uuid"]),
        "created_at": dataset["created_at"],
        "published_at": dataset["published_at"],
        "updated_at": dataset["updated_at"],
    }


class DatasetController(Controller):
    path = "/v1/datasets"
    tags = ["datasets"]

    @get("", guards=[require_role("reader")], summary="Published datasets you may read")
    async def list_datasets(self, request: Req, state: State) -> list[dict[str, Any]]:
        pool: Pool = state.db_pool
        user = request.user
        async with pool.connection() as conn:
            rows = await repo.list_readable(conn, user.org_id, user.user_id, user.is_admin)
        return [
            {
                "dataset": row["dataset_name"],
                "dataset_uuid": row["dataset_uuid"],
                "producer": {"dag": row["dag_name"], "job": row["job_name"], "output": row["output_index"]},
                "storage": row["storage"],
                "current_version": row["dataset_version"],
                "published_at": row["published_at"],
            }
            for row in rows
        ]

    @get("/{name:str}", guards=[require_role("reader")], summary="A dataset: producer, versions, storage, schema")
    async def get_dataset(self, request: Req, state: State, name: FromPath[str]) -> dict[str, Any]:
        pool: Pool = state.db_pool
        async with pool.connection() as conn:
            return await _describe(conn, request.user, name)

    @put("/{name:str}/read-roles", guards=[require_role("admin")], summary="Set who may read a dataset (admins)")
    async def set_read_roles(
        self, request: Req, state: State, name: FromPath[str], data: JSONBody[ReadRoles]
    ) -> dict[str, Any]:
        user = request.user
        wanted = sorted(set(data.roles))
        for index, role in enumerate(data.roles):
            if not ROLE_NAME.match(role):
                raise _unprocessable(f"roles.{index}: {role!r} is not a role name ({ROLE_NAME.pattern})")
        pool: Pool = state.db_pool
        async with pool.connection() as conn, conn.transaction():
            dataset = await repo.readable_by_name(conn, user.org_id, user.user_id, user.is_admin, name)
            if dataset is None:
                raise _not_found(name)
            found = await repo.roles_by_name(conn, user.org_id, wanted)
            missing = [role for role in wanted if role not in found]
            if missing:
                raise _unprocessable(f"roles: no role {missing[0]!r} in this org")
            await repo.replace_read_roles(conn, user.org_id, dataset["dataset_uuid"], [found[r] for r in wanted])
            return await _describe(conn, user, name)


def _unprocessable(detail: str) -> ClientException:
    return ClientException(detail=detail, status_code=HTTP_422_UNPROCESSABLE_ENTITY)
