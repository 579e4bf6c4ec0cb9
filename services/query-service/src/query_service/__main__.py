"""`python -m query_service`: serve the Query Service with uvicorn on TRACE_QUERY_HOST:PORT."""

from __future__ import annotations

import uvicorn

from query_service.app import create_app
from trace_core.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.query_host,
        port=settings.query_port,
        log_config=None,  # structlog owns logging
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
