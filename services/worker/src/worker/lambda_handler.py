"""The `lambda_py` entry point: a thin adapter over the wrapper. Lambda is invoked with the full task payload
(the dispatcher already started the attempt), runs it in an operator child like any worker, and reports
through the same internal API. Lambda's own retries are off; the dispatcher owns retries."""

from __future__ import annotations

import asyncio
from typing import Any

from trace_core.contracts.internal import HeartbeatRequest
from trace_core.contracts.tasks import TaskPayload
from trace_core.logging import configure_logging, get_logger
from trace_core.settings import Settings
from worker.client import DispatcherError
from worker.wrapper import Wrapper

log = get_logger(__name__)


async def run_payload(payload: TaskPayload, settings: Settings) -> None:
    wrapper = Wrapper(settings.model_copy(update={"worker_concurrency": 1}))
    try:
        # The lease started when the dispatcher invoked us; a cold start (interpreter, imports, the operator
        # child) may eat most of it, so renew it before starting the child rather than one interval after.
        await wrapper.client.heartbeat(
            HeartbeatRequest(
                task_id=payload.task_id, attempt_id=payload.attempt_id, attempt_token=payload.attempt_token
            )
        )
    except DispatcherError as refused:
        log.info("worker.attempt.abandoned", task_id=str(payload.task_id), reason=refused.detail)
        await wrapper.close()
        return
    await wrapper.children.start()
    try:
        await wrapper.run_attempt(payload)
    finally:
        await wrapper.close()


def handler(event: dict[str, Any], context: object) -> dict[str, str]:
    settings = Settings()
    configure_logging(settings)
    payload = TaskPayload.model_validate(event)
    asyncio.run(run_payload(payload, settings))
    return {"task_id": str(payload.task_id)}
