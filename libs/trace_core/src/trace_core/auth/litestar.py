"""Litestar glue: bearer-token authentication middleware and role / service-credential guards.

Apps using these keep their pool at `app.state.db_pool` and their `Settings` at `app.state.settings`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from trace_core.auth.principal import Principal, has_role
from trace_core.auth.repository import principal_by_token_hash
from trace_core.auth.tokens import hash_token, service_credential_matches
from trace_core.db.pool import Pool
from trace_core.settings import Settings

# Guards are coroutines: Litestar runs a plain-function guard in a worker thread on every request.
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class BearerTokenMiddleware(AbstractAuthenticationMiddleware):
    """Resolves `Authorization: Bearer <API token>` to a `Principal` (`request.user`), or answers 401."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        token = _bearer(connection)
        if token is None:
            raise NotAuthorizedException("missing API token: send 'Authorization: Bearer <token>'")
        pool: Pool = connection.app.state.db_pool
        async with pool.connection() as conn:
            principal = await principal_by_token_hash(conn, hash_token(token))
        if principal is None:
            raise NotAuthorizedException("the API token is unknown, expired or revoked")
        return AuthenticationResult(user=principal, auth=None)


def bearer_token_middleware(exclude: list[str]) -> DefineMiddleware:
    """The authentication middleware for every public route but the `exclude` path patterns."""
    return DefineMiddleware(BearerTokenMiddleware, exclude=exclude)


def require_role(role: str) -> Guard:
    """A guard that lets through principals holding `role` (or a higher system role)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = connection.user
        if not isinstance(principal, Principal):
            raise NotAuthorizedException("missing API token")
        if not has_role(principal, role):
            raise PermissionDeniedException(f"this needs the {role!r} role")

    return guard


async def require_service_credential(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of `/internal/*`: the caller must present the platform's service credential as a bearer token."""
    settings: Settings = connection.app.state.settings
    if not service_credential_matches(_bearer(connection), settings.service_token.get_secret_value()):
        raise NotAuthorizedException("internal API: missing or wrong service credential")
