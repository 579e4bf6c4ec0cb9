"""The dispatcher app as a client sees it: probes, OpenAPI, authentication, migrations at start."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from dispatcher.app import create_app
from tests.support.rows import Conn
from trace_core.auth.repository import bootstrap_org
from trace_core.db.migrate import load_migrations
from trace_core.settings import Settings


async def test_probes_and_openapi_need_no_token(dispatcher: AsyncTestClient[Any]) -> None:
    assert (await dispatcher.get("/healthz")).json()["status"] == "ok"
    assert (await dispatcher.get("/readyz")).json() == {"status": "ready"}
    schema = (await dispatcher.get("/schema/openapi.json")).json()
    assert "/v1/me" in schema["paths"]


async def test_me_needs_a_token_and_reports_roles(dispatcher: AsyncTestClient[Any], db: Conn) -> None:
    principal, token = await bootstrap_org(db, "acme", "root")
    assert (await dispatcher.get("/v1/me")).status_code == 401
    response = await dispatcher.get("/v1/me", headers={"Authorization": f"Bearer {token.secret}"})
    assert response.status_code == 200
    assert response.json() == {
        "user_id": str(principal.user_id),
        "user_name": "root",
        "org_id": str(principal.org_id),
        "org_name": "acme",
        "roles": ["admin"],
    }


async def test_unknown_routes_are_404_without_a_stack_trace(dispatcher: AsyncTestClient[Any], db: Conn) -> None:
    _, token = await bootstrap_org(db, "acme")
    response = await dispatcher.get("/v1/nothing-here", headers={"Authorization": f"Bearer {token.secret}"})
    assert response.status_code == 404
    assert "Traceback" not in response.text


async def test_the_dispatcher_migrates_an_empty_database_at_start(empty_database_url: str, settings: Settings) -> None:
    fresh = settings.model_copy(update={"database_url": empty_database_url, "migrate_on_start": True})
    async with AsyncTestClient(app=create_app(fresh)) as client:
        assert (await client.get("/readyz")).status_code == 200
    import psycopg

    with psycopg.connect(empty_database_url) as conn:
        applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert applied == (len(load_migrations()),)
