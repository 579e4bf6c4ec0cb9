"""Who am I: the caller's org, user and roles."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, get
from litestar.datastructures import State
from pydantic import BaseModel

from trace_core.auth.principal import Principal


class Me(BaseModel):
    user_id: UUID
    user_name: str
    org_id: UUID
    org_name: str
    roles: list[str]


class OrgController(Controller):
    path = "/v1"
    tags = ["orgs"]

    @get("/me", summary="The caller, its org and roles")
    async def me(self, request: Request[Principal, None, State]) -> Me:
        principal = request.user
        return Me(
            user_id=principal.user_id,
            user_name=principal.user_name,
            org_id=principal.org_id,
            org_name=principal.org_name,
            roles=sorted(principal.roles),
        )
