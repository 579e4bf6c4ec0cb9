"""User functions of examples/hello.yaml (`operator: python`, `config.function: "module:function"`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def five_numbers(event: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """A source: each yielded event is emitted at once."""
    for n in range(5):
        yield {"scope": {"cursor": str(n)}, "payload": {"n": n}}


def double(event: dict[str, Any]) -> list[dict[str, Any]]:
    """Reactive: one event in, one event out, for the same scope."""
    return [{"scope": event["scope"], "payload": {"n": event["payload"]["n"] * 2}}]
