"""`python -m dispatcher`: serve the dispatcher with uvicorn on TRACE_DISPATCHER_HOST:PORT."""

from __future__ import annotations

import uvicorn

from dispatcher.app import create_app
from trace_core.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.dispatcher_host,
        port=settings.dispatcher_port,
        log_config=None,  # structlog owns logging
        access_log=False,
    )


if __name__ == "__main__":
    main()
