"""Liveness probe and Prometheus metrics."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State

from query_service.metrics import Metrics


class HealthController(Controller):
    path = ""
    tags = ["health"]

    @get("/healthz", summary="The process is up")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/metrics", summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
    async def metrics(self, state: State) -> Response[bytes]:
        metrics: Metrics = state.metrics
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")
