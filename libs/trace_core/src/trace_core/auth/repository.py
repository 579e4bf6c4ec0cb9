"""The SQL of authentication: principals by token, and bootstrapping an org."""

from __future__ import annotations

from uuid import UUID

from trace_core.auth.principal import SYSTEM_ROLES, Principal
from trace_core.auth.tokens import IssuedToken, issue_token
from trace_core.db.pool import Connection as Conn
from trace_core.db.queries import load_queries

Q = load_queries("trace_core.auth", "queries.sql")


class OrgExistsError(ValueError):
    """`bootstrap_org` was asked for an org name that is taken."""


async def principal_by_token_hash(conn: Conn, token_hash: bytes) -> Principal | None:
    cursor = await conn.execute(Q["principal_by_token_hash"], {"token_hash": token_hash})
    row = await cursor.fetchone()
    if row is None:
        return None
    await conn.execute(Q["touch_token"], {"token_hash": token_hash})
    return Principal(
        user_id=row["user_id"],
        user_name=row["user_name"],
        org_id=row["org_id"],
        org_name=row["org_name"],
        roles=frozenset(row["roles"]),
    )


async def create_token(conn: Conn, org_id: UUID, user_id: UUID, label: str) -> IssuedToken:
    token = issue_token()
    await conn.execute(
        Q["insert_token"],
        {
            "org_id": org_id,
            "user_id": user_id,
            "token_hash": token.token_hash,
            "display_prefix": token.display_prefix,
            "label": label,
        },
    )
    return token


async def bootstrap_org(conn: Conn, org_name: str, admin_name: str = "admin") -> tuple[Principal, IssuedToken]:
    """Create an org with its system roles and an admin user holding a new token, in one transaction."""
    async with conn.transaction():
        cursor = await conn.execute(Q["insert_org"], {"name": org_name})
        row = await cursor.fetchone()
        if row is None:
            raise OrgExistsError(f"org {org_name!r} already exists")
        org_id: UUID = row["org_id"]
        await conn.execute(Q["insert_system_roles"], {"org_id": org_id})
        cursor = await conn.execute(Q["insert_user"], {"org_id": org_id, "name": admin_name, "email": None})
        user_row = await cursor.fetchone()
        assert user_row is not None
        user_id: UUID = user_row["user_id"]
        await conn.execute(Q["grant_role"], {"org_id": org_id, "user_id": user_id, "granted_by": None, "role": "admin"})
        token = await create_token(conn, org_id, user_id, label="bootstrap")
    principal = Principal(user_id, admin_name, org_id, org_name, frozenset({SYSTEM_ROLES[0]}))
    return principal, token


async def issue_user_token(conn: Conn, org_name: str, user_name: str, label: str) -> IssuedToken | None:
    """A new token for an existing user; None when there is no such user."""
    cursor = await conn.execute(Q["user_by_name"], {"org_name": org_name, "user_name": user_name})
    row = await cursor.fetchone()
    if row is None:
        return None
    return await create_token(conn, row["org_id"], row["user_id"], label)
