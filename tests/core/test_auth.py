"""API tokens, the role rule, and the Litestar middleware and guards over a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.testing import AsyncTestClient

from tests.support.rows import Conn
from trace_core.auth import Principal, has_role, hash_token, issue_token, service_credential_matches
from trace_core.auth.litestar import bearer_token_middleware, require_role, require_service_credential
from trace_core.auth.repository import OrgExistsError, bootstrap_org, principal_by_token_hash
from trace_core.db.pool import create_pool
from trace_core.settings import Settings


def test_tokens_are_random_prefixed_and_stored_hashed() -> None:
    first, second = issue_token(), issue_token()
    assert first.secret != second.secret
    assert first.secret.startswith("trc_") and len(first.secret) > 40
    assert first.token_hash == hash_token(first.secret) and len(first.token_hash) == 32
    assert first.display_prefix == first.secret[:10]  # "trc_" and 6 of the 43 random characters


@pytest.mark.parametrize(
    ("roles", "role", "allowed"),
    [
        ({"admin"}, "writer", True),
        ({"admin"}, "analysts", True),
        ({"writer"}, "reader", True),
        ({"writer"}, "admin", False),
        ({"reader"}, "writer", False),
        ({"analysts"}, "analysts", True),
        ({"analysts"}, "reader", False),
        (set(), "reader", False),
    ],
)
def test_role_rule(roles: set[str], role: str, allowed: bool) -> None:
    principal = Principal(user_id=None, user_name="u", org_id=None, org_name="o", roles=frozenset(roles))  # type: ignore[arg-type]
    assert has_role(principal, role) is allowed


def test_service_credential_check() -> None:
    assert service_credential_matches("s3cret", "s3cret")
    assert not service_credential_matches("s3cre", "s3cret")
    assert not service_credential_matches(None, "s3cret")


async def test_bootstrap_then_resolve_and_revoke(db: Conn) -> None:
    principal, token = await bootstrap_org(db, "acme", "root")
    found = await principal_by_token_hash(db, hash_token(token.secret))
    assert found == principal
    assert found is not None and found.roles == {"admin"}
    with pytest.raises(OrgExistsError):
        await bootstrap_org(db, "acme")
    cursor = await db.execute("SELECT count(*) AS n FROM org_roles WHERE org_id = %(o)s", {"o": principal.org_id})
    assert (await cursor.fetchone()) == {"n": 3}
    stored = await (await db.execute("SELECT token_hash FROM api_tokens")).fetchall()
    assert all(token.secret.encode() not in bytes(row["token_hash"]) for row in stored)
    await db.execute("UPDATE api_tokens SET revoked_at = now()")
    assert await principal_by_token_hash(db, hash_token(token.secret)) is None


async def test_expired_tokens_and_disabled_users_are_refused(db: Conn) -> None:
    _, token = await bootstrap_org(db, "acme")
    await db.execute("UPDATE api_tokens SET expires_at = created_at + interval '1 microsecond'")
    assert await principal_by_token_hash(db, hash_token(token.secret)) is None
    await db.execute("UPDATE api_tokens SET expires_at = NULL")
    await db.execute("UPDATE users SET disabled_at = now()")
    assert await principal_by_token_hash(db, hash_token(token.secret)) is None


@get("/writers-only", guards=[require_role("writer")])
async def writers_only() -> dict[str, str]:
    return {"ok": "yes"}


@get("/internal/ping", guards=[require_service_credential])
async def internal_ping() -> dict[str, str]:
    return {"pong": "yes"}


@pytest.fixture
async def guarded_app(settings: Settings, database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """A small Litestar app using the real middleware and guards against this test's database."""
    pool = create_pool(settings, database_url, name="auth-test")
    await pool.open(wait=True)
    app = Litestar(
        route_handlers=[writers_only, internal_ping],
        middleware=[bearer_token_middleware(["^/internal/"])],
        state=State({"settings": settings, "db_pool": pool}),
    )
    try:
        async with AsyncTestClient(app=app) as client:
            yield client
    finally:
        await pool.close()


async def _user_with_roles(db: Conn, org_id: Any, name: str, roles: list[str]) -> str:
    from trace_core.auth.repository import Q, create_token

    cursor = await db.execute(Q["insert_user"], {"org_id": org_id, "name": name, "email": None})
    row = await cursor.fetchone()
    assert row is not None
    for role in roles:
        await db.execute(
            Q["grant_role"], {"org_id": org_id, "user_id": row["user_id"], "granted_by": None, "role": role}
        )
    return (await create_token(db, org_id, row["user_id"], "test")).secret


async def test_guards_over_http(guarded_app: AsyncTestClient[Any], db: Conn, settings: Settings) -> None:
    admin, admin_token = await bootstrap_org(db, "acme")
    reader = await _user_with_roles(db, admin.org_id, "rita", ["reader"])
    writer = await _user_with_roles(db, admin.org_id, "will", ["writer"])

    missing = await guarded_app.get("/writers-only")
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
    wrong = await guarded_app.get("/writers-only", headers={"Authorization": "Bearer trc_nope"})
    assert wrong.status_code == 401 and "unknown, expired or revoked" in wrong.json()["detail"]
    basic = await guarded_app.get("/writers-only", headers={"Authorization": f"Basic {admin_token.secret}"})
    assert basic.status_code == 401
    denied = await guarded_app.get("/writers-only", headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403 and "'writer' role" in denied.json()["detail"]
    for token in (writer, admin_token.secret):
        allowed = await guarded_app.get("/writers-only", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200

    service = settings.service_token.get_secret_value()
    assert (await guarded_app.get("/internal/ping")).status_code == 401
    user_token = await guarded_app.get("/internal/ping", headers={"Authorization": f"Bearer {writer}"})
    assert user_token.status_code == 401 and "service credential" in user_token.json()["detail"]
    ok = await guarded_app.get("/internal/ping", headers={"Authorization": f"Bearer {service}"})
    assert ok.status_code == 200
