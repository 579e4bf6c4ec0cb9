"""structlog set-up: JSON lines in production, a readable console locally.

Event names are stable and dotted (`dispatcher.task.retry_scheduled`) with key-value fields, so logs can be
queried by name rather than by message text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from trace_core.settings import LogFormat, Settings


def configure_logging(settings: Settings) -> None:
    """Route stdlib and structlog records through one pipeline in the configured format."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if settings.log_format is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO: a worker makes several calls per batch of tasks
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def request_failure_logger(
    event: str, answered: tuple[type[BaseException], ...] = ()
) -> Callable[[BaseException, Mapping[str, Any]], Awaitable[None]]:
    """A Litestar `after_exception` hook for a service: client errors (4xx, and the `answered` exception types
    its handlers turn into answers) are not logged; anything else is a bug worth its traceback in the log,
    never in the answer."""
    from litestar.exceptions import HTTPException

    log = get_logger("trace.http")

    async def log_failure(exception: BaseException, scope: Mapping[str, Any]) -> None:
        if isinstance(exception, answered):
            return
        if not isinstance(exception, HTTPException) or exception.status_code >= 500:
            log.error(event, path=scope.get("path"), exc_info=exception)

    return log_failure
