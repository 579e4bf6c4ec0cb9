"""User functions (`operator: python`) the suites deploy. Workers import them as `tests.support.udfs:NAME`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def five_numbers(event: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """A source: yields five events, cursor 0..4."""
    for n in range(5):
        yield {"scope": {"cursor": str(n)}, "payload": {"n": n}}


def double(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"scope": event["scope"], "payload": {"n": event["payload"]["n"] * 2}}]
