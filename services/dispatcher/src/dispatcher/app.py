"""`create_app(settings)`: the dispatcher's Litestar application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from dispatcher.health import HealthController
from dispatcher.internal.controller import InternalController
from dispatcher.internal.queries import BatchQueryApi
from dispatcher.internal.rows import RowsApi
from dispatcher.internal.service import WorkerApi
from dispatcher.loops.context import LoopContext
from dispatcher.loops.leader import Leader
from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.public.dags import DagController
from dispatcher.public.datasets import DatasetController
from dispatcher.public.orgs import OrgController
from dispatcher.public.tasks import TaskController
from dispatcher.transports.base import Transport
from dispatcher.transports.embedded import EmbeddedTransport
from dispatcher.transports.lambda_invoke import LambdaTransport
from dispatcher.transports.sqs import SqsTransport
from trace_core.auth.litestar import bearer_token_middleware
from trace_core.db.migrate import migrate_url
from trace_core.db.pool import create_pool, resolve_database_url
from trace_core.logging import configure_logging, get_logger, request_failure_logger
from trace_core.settings import Settings

log = get_logger(__name__)

# Routes that answer without an API token: probes, metrics, the OpenAPI document, and the internal API (which
# has its own service-credential guard).
UNAUTHENTICATED = ["^/healthz", "^/readyz", "^/metrics", "^/schema", "^/internal/"]


def _transports(settings: Settings, worker_api: WorkerApi) -> dict[str, Transport]:
    ecs: Transport = SqsTransport(settings) if settings.transport == "sqs" else EmbeddedTransport()
    lam: Transport = (
        LambdaTransport(settings, worker_api) if settings.lambda_transport == "lambda" else EmbeddedTransport()
    )
    return {"ecs_python": ecs, "lambda_py": lam}


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
        notifications = Notifications(database_url)
        notifications.start()
        metrics = Metrics()
        worker_api = WorkerApi(pool, settings, notifications, metrics)
        transports = _transports(settings, worker_api)
        leader = Leader(LoopContext(pool, settings, notifications, metrics, transports), database_url)
        if settings.dispatcher_loops:
            leader.start()
        app.state.update(
            db_pool=pool,
            notifications=notifications,
            metrics=metrics,
            worker_api=worker_api,
            rows_api=RowsApi(pool),
            batch_query_api=BatchQueryApi(pool, settings, notifications),
            leader=leader,
        )
        log.info("dispatcher.started", port=settings.dispatcher_port, loops=settings.dispatcher_loops)
        try:
            yield
        finally:
            await leader.stop()
            await worker_api.close()
            for transport in transports.values():
                await transport.close()
            await notifications.stop()
            await pool.close()
            log.info("dispatcher.stopped")

    return Litestar(
        route_handlers=[
            HealthController,
            OrgController,
            DagController,
            DatasetController,
            TaskController,
            InternalController,
        ],
        lifespan=[lifespan],
        logging_config=None,  # structlog (trace_core.logging) owns logging
        after_exception=[request_failure_logger("dispatcher.request.failed")],
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
