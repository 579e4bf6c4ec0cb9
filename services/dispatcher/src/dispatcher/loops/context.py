from __future__ import annotations

from dataclasses import dataclass

from dispatcher.metrics import Metrics
from dispatcher.notifications import Notifications
from dispatcher.transports.base import Transport
from trace_core.db.pool import Pool
from trace_core.settings import Settings


@dataclass
class LoopContext:
    """What every loop needs: the pool, settings, notifications, metrics and a transport per runtime."""

    pool: Pool
    settings: Settings
    notifications: Notifications
    metrics: Metrics
    transports: dict[str, Transport]
