"""Task ids from SQS: one queue per runtime, message body is the task id. A message is deleted once its
task's attempt has started (the dispatcher then owns the task's fate)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import aioboto3

from trace_core.logging import get_logger
from trace_core.settings import Settings
from worker.wrapper import Wrapper

log = get_logger(__name__)


async def run_from_sqs(wrapper: Wrapper, settings: Settings) -> None:
    session = aioboto3.Session(region_name=settings.aws_region)
    queue_url = f"{settings.sqs_queue_url_prefix}{settings.worker_runtime}"
    async with session.client("sqs", endpoint_url=settings.aws_endpoint_url) as sqs:
        receipts: dict[UUID, str] = {}

        async def delete(task_id: UUID) -> None:
            receipt = receipts.pop(task_id, None)
            if receipt is not None:
                await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)

        async def batches(ahead: int) -> AsyncIterator[list[UUID]]:
            while not wrapper.draining.is_set():
                room = min(10, wrapper.room(ahead))
                if room <= 0:
                    await asyncio.sleep(0.05)
                    continue
                answer = await sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=room, WaitTimeSeconds=settings.sqs_wait_s
                )
                batch: list[UUID] = []
                for message in answer.get("Messages", []):
                    try:
                        task_id = UUID(message["Body"].strip())
                    except ValueError:
                        log.warning("worker.sqs.bad_message", body=message["Body"][:100])
                        await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                        continue
                    receipts[task_id] = message["ReceiptHandle"]
                    batch.append(task_id)
                yield batch

        wrapper.on_fetched = delete
        await wrapper.run(batches)
