"""Batching of concurrent calls: the dispatcher group-commits task-fetch and task-complete, and a worker
sends its completions in batch calls.

Requests queue up while a batch is being run; each executor takes everything waiting (up to `max_batch`)
as its next batch. With one request in flight a batch is that request, so latency does not suffer; under
load, commits, round trips and HTTP requests are shared by the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from trace_core.logging import get_logger

log = get_logger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")
# A batch answers each request with its result, or with the exception to raise to that caller.
BatchRunner = Callable[[list[Request]], Awaitable[list[Result | Exception]]]


class Batcher(Generic[Request, Result]):
    def __init__(self, name: str, run: BatchRunner[Request, Result], max_batch: int = 256, executors: int = 2) -> None:
        self._name = name
        self._run = run
        self._max_batch = max_batch
        self._executors = executors
        self._queue: asyncio.Queue[tuple[Request, asyncio.Future[Result]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def submit(self, request: Request) -> Result:
        return await self._enqueue(request)

    async def submit_many(self, requests: list[Request]) -> list[Result | BaseException]:
        """Each request as if submitted alone, in order; a request's exception is its answer. Cheaper than a
        gather of `submit`s, which made an asyncio task per request."""
        return await asyncio.gather(*(self._enqueue(request) for request in requests), return_exceptions=True)

    def _enqueue(self, request: Request) -> asyncio.Future[Result]:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._execute(), name=f"{self._name}-{i}") for i in range(self._executors)
            ]
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((request, future))
        return future

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _execute(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            requests = [request for request, _ in batch]
            try:
                results = await self._run(requests)
            except Exception as error:  # a bug or a lost connection: isolate it to the request that caused it
                if len(batch) == 1:
                    results = [error]
                else:
                    log.warning("batch.retrying_singly", batch=self._name, size=len(batch), error=str(error))
                    results = [await self._run_alone(request) for request in requests]
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _run_alone(self, request: Request) -> Result | Exception:
        try:
            return (await self._run([request]))[0]
        except Exception as error:
            return error
