"""Liveness and readiness probes, and Prometheus metrics."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from dispatcher.loops.leader import Leader
from dispatcher.metrics import Metrics
from trace_core.db.pool import Pool


class HealthController(Controller):
    path = ""
    tags = ["health"]

    @get("/healthz", summary="The process is up; `leader` says whether it runs the loops")
    async def healthz(self, state: State) -> dict[str, str | bool]:
        leader: Leader = state.leader
        return {"status": "ok", "leader": leader.is_leader}

    @get("/readyz", summary="The process can reach Postgres")
    async def readyz(self, state: State) -> Response[dict[str, str]]:
        pool: Pool = state.db_pool
        try:
            async with pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except (OperationalError, PoolTimeout) as error:
            return Response({"status": "unavailable", "detail": str(error)}, status_code=HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"status": "ready"}, status_code=HTTP_200_OK)

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, state: State) -> Response[bytes]:
        metrics: Metrics = state.metrics
        return Response(await metrics.render(state.db_pool), media_type="text/plain; version=0.0.4")
