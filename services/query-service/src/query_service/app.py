"""`create_app(settings)`: the Query Service's Litestar application and its lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from query_service.batch import BatchQueries
from query_service.dispatcher import DispatcherClient
from query_service.health import HealthController
from query_service.metrics import Metrics
from query_service.query import QueryController
from query_service.service import QueryService
from trace_core.auth.litestar import bearer_token_middleware
from trace_core.db.migrate import migrate_url
from trace_core.db.pool import create_pool, resolve_database_url
from trace_core.logging import configure_logging, get_logger, request_failure_logger
from trace_core.objectstore import open_object_store
from trace_core.query import QueryEngine, QueryError
from trace_core.settings import Settings

log = get_logger(__name__)

UNAUTHENTICATED = ["^/healthz", "^/metrics", "^/schema"]


def _query_error(_: Request[object, object, State], error: QueryError) -> Response[dict[str, object]]:
    return Response({"status_code": error.status_code, "detail": str(error)}, status_code=error.status_code)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database_url = resolve_database_url(settings)
        if settings.migrate_on_start:
            await migrate_url(database_url)
        pool = create_pool(settings, database_url, name="query-service")
        await pool.open(wait=True)
        store = open_object_store(settings)
        dispatcher = DispatcherClient(settings.dispatcher_url, settings.service_token.get_secret_value())
        engine: QueryEngine | None = None
        try:
            engine = await asyncio.to_thread(
                QueryEngine,
                store,
                database_url=database_url,
                aws_region=settings.aws_region,
                aws_endpoint_url=settings.aws_endpoint_url,
                concurrency=settings.query_concurrency,
            )
            metrics = Metrics()
            app.state.update(
                db_pool=pool,
                metrics=metrics,
                query_service=QueryService(pool, engine, metrics),
                batch_queries=BatchQueries(pool, engine, dispatcher, metrics),
            )
            log.info("query_service.started", port=settings.query_port, object_store=store.root)
            yield
        finally:
            if engine is not None:
                await asyncio.to_thread(engine.close)
            await dispatcher.close()
            await store.close()
            await pool.close()
            log.info("query_service.stopped")

    return Litestar(
        route_handlers=[HealthController, QueryController],
        lifespan=[lifespan],
        logging_config=None,  # structlog (trace_core.logging) owns logging
        exception_handlers={QueryError: _query_error},
        after_exception=[request_failure_logger("query_service.request.failed", answered=(QueryError,))],
        middleware=[bearer_token_middleware(UNAUTHENTICATED)],
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(
            title="Trace Query Service",
            version="0.1.0",
            path="/schema",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
    )
