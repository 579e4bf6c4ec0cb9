"""`python -m worker` / `trace-worker`: run a worker wrapper until SIGTERM (then drain)."""

from __future__ import annotations

import asyncio
import signal

import uvloop

from trace_core.gc_tuning import freeze_startup_heap
from trace_core.logging import configure_logging
from trace_core.settings import Settings
from worker.scrub import scrub_process_secrets
from worker.sqs import run_from_sqs
from worker.wrapper import Wrapper


async def serve(settings: Settings) -> None:
    wrapper = Wrapper(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, wrapper.drain)
    if settings.transport == "sqs" and settings.worker_runtime == "ecs_python":
        await run_from_sqs(wrapper, settings)
    else:
        await wrapper.run()


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    scrub_process_secrets()
    freeze_startup_heap()
    # the wrapper is event-loop bound (HTTP calls, child pipes, timers): uvloop does that work in C
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
