"""The `lambda_py` entry point: a thin adapter over the wrapper. Lambda is invoked with the full task payload
(the dispatcher already started the attempt), runs it in an operator child like any worker, and reports
through the same internal API. Lambda's own retries are off; the dispatcher owns retries."""

from __future__ import annotations

import asyncio
from typing import Any

from trace_core.contracts.tasks import TaskPayload
from trace_core.logging import configure_logging
from trace_core.settings import Settings
from worker.wrapper import Wrapper


async def run_payload(payload: TaskPayload, settings: Settings) -> None:
    wrapper = Wrapper(settings.model_copy(update={"worker_concurrency": 1}))
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
