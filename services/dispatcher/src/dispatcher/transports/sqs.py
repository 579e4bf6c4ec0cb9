"""The SQS transport: one queue per runtime (`{prefix}{runtime}`), each message body is a task id only."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any
from uuid import UUID

import aioboto3
from botocore.exceptions import BotoCoreError, ClientError

from trace_core.logging import get_logger
from trace_core.settings import Settings

log = get_logger(__name__)


class SqsTransport:
    in_database = False

    def __init__(self, settings: Settings) -> None:
        self._prefix = settings.sqs_queue_url_prefix
        self._session = aioboto3.Session(region_name=settings.aws_region)
        self._endpoint = settings.aws_endpoint_url
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def _sqs(self) -> Any:
        if self._client is None:
            self._client = await self._stack.enter_async_context(
                self._session.client("sqs", endpoint_url=self._endpoint)
            )
        return self._client

    async def send(self, runtime: str, task_ids: list[UUID]) -> list[UUID]:
        sqs = await self._sqs()
        failed: list[UUID] = []
        for start in range(0, len(task_ids), 10):  # SendMessageBatch takes 10 at most
            chunk = task_ids[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": str(task_id)} for i, task_id in enumerate(chunk)]
            try:
                answer = await sqs.send_message_batch(QueueUrl=f"{self._prefix}{runtime}", Entries=entries)
            except (BotoCoreError, ClientError) as error:
                log.warning("dispatcher.sqs.send_failed", runtime=runtime, tasks=len(chunk), error=str(error))
                failed += chunk
                continue
            failed += [chunk[int(entry["Id"])] for entry in answer.get("Failed", [])]
        return failed

    async def close(self) -> None:
        await self._stack.aclose()
