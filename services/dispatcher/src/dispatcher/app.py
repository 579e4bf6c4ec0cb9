"""`create_app(settings)`: the dispatcher's Litestar application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from dispatcher.health import HealthController
from dispatcher.public.orgs import OrgController
from trace_core.auth.litestar import bearer_token_middleware
from trace_core.db.migrate import migrate_url
from trace_core.db.pool import create_pool, resolve_database_url
from trace_core.logging import configure_logging, get_logger
from trace_core.settings import Settings

log = get_logger(__name__)

# Routes that answer without an API token: probes, the OpenAPI document, and the internal API (which has
# its own service-credential guard).
UNAUTHENTICATED = ["^/healthz", "^/readyz", "^/metrics", "^/schema", "^/internal/"]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database_url = resolve_database_url(settings)
        if settings.migrate_on_start:
            await migrate_url(database_url)
        pool = create_pool(settings, database_url, name="dispatcher")
        await pool.open(wait=True)
        app.state.db_pool = pool
        log.info("dispatcher.started", port=settings.dispatcher_port)
        try:
            yield
        finally:
            await pool.close()
            log.info("dispatcher.stopped")

    return Litestar(
        route_handlers=[HealthController, OrgController],
        lifespan=[lifespan],
        middleware=[bearer_token_middleware(UNAUTHENTICATED)],
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(
            title="Trace dispatcher",
            version="0.1.0",
            path="/schema",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
    )
