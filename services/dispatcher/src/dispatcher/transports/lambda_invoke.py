"""The Lambda transport: the dispatcher starts the attempt itself and invokes `{prefix}{runtime}` with the
full task payload (the same document task-fetch returns), asynchronously and with Lambda's retries off:
the dispatcher owns retries, so a failed invoke fails the attempt and the usual backoff applies."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any
from uuid import UUID

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from dispatcher.internal.service import WorkerApi
from trace_core.contracts.internal import CompletionStatus, TaskCompleteRequest
from trace_core.contracts.tasks import TaskPayload
from trace_core.logging import get_logger
from trace_core.settings import Settings

log = get_logger(__name__)


class LambdaTransport:
    in_database = False

    def __init__(self, settings: Settings, worker_api: WorkerApi) -> None:
        self._prefix = settings.lambda_function_prefix
        self._session = aioboto3.Session(region_name=settings.aws_region)
        self._endpoint = settings.aws_endpoint_url
        self._api = worker_api
        # The attempt starts at invoke; until the function runs (async-invoke queueing, cold start) its lease is
        # the time any dispatched task has to start, then each heartbeat's.
        self._first_lease_s = max(settings.lease_s, settings.dispatch_timeout_s)
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def _lambda(self) -> Any:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                self._session.client(
                    "lambda", endpoint_url=self._endpoint, config=AioConfig(retries={"max_attempts": 1})
                )
            )
        return self._client

    async def send(self, runtime: str, task_ids: list[UUID]) -> list[UUID]:
        client = await self._lambda()
        for task_id in task_ids:
            payload = await self._api.fetch(
                task_id, worker_id=f"lambda:{self._prefix}{runtime}", lease_s=self._first_lease_s
            )
            if not isinstance(payload, TaskPayload):
                continue  # canceled before it was invoked
            try:
                answer = await client.invoke(
                    FunctionName=f"{self._prefix}{runtime}",
                    InvocationType="Event",
                    Payload=payload.model_dump_json().encode(),
                )
                if answer.get("StatusCode") not in {200, 202}:
                    raise RuntimeError(f"Invoke answered {answer.get('StatusCode')}")
            except (BotoCoreError, ClientError, RuntimeError) as error:
                log.warning("dispatcher.lambda.invoke_failed", task_id=str(task_id), error=str(error))
                await self._api.complete(
                    TaskCompleteRequest(
                        task_id=task_id,
                        attempt_id=payload.attempt_id,
                        attempt_token=payload.attempt_token,
                        status=CompletionStatus.FAILED,
                        error=f"Lambda invoke of {self._prefix}{runtime} failed: {error}",
                    )
                )
        return []

    async def close(self) -> None:
        await self._stack.aclose()
