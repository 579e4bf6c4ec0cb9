"""Prometheus metrics of the dispatcher: counters kept in process, queue gauges read from Postgres at scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dispatcher.repositories import tasks as repo
from trace_core.db.pool import Pool

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Gauge(
            "trace_tasks", "Unfinished tasks by runtime and status", ["runtime", "status"], registry=self.registry
        )
        self.ready_depth = Gauge(
            "trace_ready_depth", "Tasks ready to dispatch, by runtime", ["runtime"], registry=self.registry
        )
        self.in_flight = Gauge(
            "trace_in_flight", "Tasks dispatched or running, by runtime", ["runtime"], registry=self.registry
        )
        self.dispatched = Counter(
            "trace_dispatched_total", "Tasks handed to a transport", ["runtime"], registry=self.registry
        )
        self.dispatch_latency = Histogram(
            "trace_dispatch_latency_seconds",
            "From an event being accepted to its task being dispatched",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter("trace_attempts_total", "Attempts started", registry=self.registry)
        self.retries = Counter("trace_retries_total", "Attempts that retried a task", registry=self.registry)
        self.reaped = Counter("trace_reaped_leases_total", "Attempts whose lease expired", registry=self.registry)
        self.routed_events = Counter("trace_routed_events_total", "Events routed to tasks", registry=self.registry)

    async def render(self, pool: Pool) -> bytes:
        """Refresh the gauges from Postgres, then render the text exposition format."""
        async with pool.connection() as conn:
            counts = await repo.task_counts(conn)
            depth = await repo.ready_depth(conn)
        self.tasks.clear()
        self.in_flight.clear()
        self.ready_depth.clear()
        in_flight: dict[str, int] = {}
        for row in counts:
            self.tasks.labels(row["runtime"], row["status"]).set(row["n"])
            if row["status"] in {"Dispatched", "Running"}:
                in_flight[row["runtime"]] = in_flight.get(row["runtime"], 0) + int(row["n"])
        for runtime, n in in_flight.items():
            self.in_flight.labels(runtime).set(n)
        for row in depth:
            self.ready_depth.labels(row["runtime"]).set(row["n"])
        return generate_latest(self.registry)
