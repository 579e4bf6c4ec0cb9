"""User functions of examples/trades.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def trade_batches(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A source: `batches` block ranges of four trades, written to the Postgres output 0 and the Parquet
    output 1. Each `{"rows": …}` item is stored for its scope, then that scope's data event is emitted."""
    for batch in range(config["batches"]):
        rows = [{"id": batch * 10 + i, "amount": (i + 1) * 10, "wei": 10**21 * i} for i in range(4)]
        scope = {"range": {"start": batch * 10, "end": batch * 10 + 9}}
        yield {"rows": rows, "output": 0, "scope": scope}
        yield {"rows": rows, "output": 1, "scope": scope}
