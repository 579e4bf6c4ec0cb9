"""The range manifests of `make bench-ingest`'s extract-only phase, as range_aggregator would emit them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def range_manifests(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Blocks 0..blocks-1 in ranges of `range_size`, scoped like range_aggregator's manifests."""
    for start in range(0, config["blocks"], config["range_size"]):
        end = min(start + config["range_size"], config["blocks"]) - 1
        yield {"scope": {"partition_key": f"{start}_{end}", "range": {"start": start, "end": end}}}
