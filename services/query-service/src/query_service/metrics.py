"""Prometheus metrics of the Query Service: queries by outcome and their duration."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# Outcomes a query's request ends with, one label value each; `queued` is a batch query handed to the dispatcher.
OUTCOMES = (
    "completed",
    "truncated",
    "queued",
    "refused",
    "not_found",
    "unavailable",
    "sql_error",
    "timeout",
    "failed",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queries = Counter("trace_queries_total", "Queries by outcome", ["outcome"], registry=self.registry)
        self.duration = Histogram(
            "trace_query_duration_seconds",
            "From a query being received to its result being ready, by outcome",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def observe(self, outcome: str, seconds: float) -> None:
        self.queries.labels(outcome).inc()
        self.duration.labels(outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
