"""`python -m dispatcher`: serve the dispatcher with uvicorn on TRACE_DISPATCHER_HOST:PORT."""

from __future__ import annotations

import uvicorn

from dispatcher.app import create_app
from trace_core.gc_tuning import freeze_startup_heap
from trace_core.settings import Settings


def main() -> None:
    settings = Settings()
    app = create_app(settings)
    freeze_startup_heap()
    uvicorn.run(
        app,
        host=settings.dispatcher_host,
        port=settings.dispatcher_port,
        log_config=None,  # structlog owns logging
        access_log=False,
        # open long polls (task-poll waits up to 5 s) would hold a shutdown; workers retry a cut poll
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
