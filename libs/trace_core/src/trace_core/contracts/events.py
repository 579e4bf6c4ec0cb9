"""Events: "dataset D, version V, changed for this scope" (SPEC §2, §4, §7)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Self
from uuid import UUID

import pydantic_core
from pydantic import Field, model_validator

from trace_core.contracts._base import Contract
from trace_core.idempotency import scope_key

MAX_PAYLOAD_BYTES = 16_384


class EventKind(StrEnum):
    DATA = "data"
    INVALIDATION = "invalidation"


class BlockRange(Contract):
    """An inclusive range of block numbers (or any ordered unit)."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"range end {self.end} is before start {self.start}")
        return self


class EventScope(Contract):
    """What changed: a cursor, a partition key, a range, or a combination (a range manifest carries both
    `partition_key` and `range`)."""

    cursor: str | None = Field(None, min_length=1, max_length=512)
    partition_key: str | None = Field(None, min_length=1, max_length=512)
    range: BlockRange | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if self.cursor is None and self.partition_key is None and self.range is None:
            raise ValueError("a scope needs a cursor, a partition_key or a range")
        return self

    @classmethod
    def from_columns(
        cls, cursor: str | None, partition_key: str | None, range_start: int | None, range_end: int | None
    ) -> EventScope:
        """The scope of a stored event, from its columns (`events.scope_cursor`, `partition_key`, `range_*`)."""
        span = None if range_start is None or range_end is None else BlockRange(start=range_start, end=range_end)
        return cls(cursor=cursor, partition_key=partition_key, range=span)

    @property
    def key(self) -> str:
        """Canonical text of the scope; part of the event dedup key."""
        start, end = (self.range.start, self.range.end) if self.range else (None, None)
        return scope_key(self.cursor, self.partition_key, start, end)

    @property
    def storage_key(self) -> str:
        """The key a scope's rows are stored under (`_trace_scope` of Postgres datasets). A scope with a range
        is stored under its range alone, as its Parquet file is named after the range: the cursor of a block
        event (its hash) or a manifest's partition key tells events apart, but a rewrite of blocks n..m from
        another branch must replace the rows the first branch wrote."""
        if self.range is None:
            return self.key
        return scope_key(None, None, self.range.start, self.range.end)


class EmittedEvent(Contract):
    """An event as a task emits it: for its output `output` (index into the job's outputs)."""

    output: int = Field(0, ge=0)
    kind: EventKind = EventKind.DATA
    scope: EventScope
    payload: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _small_payload(self) -> Self:
        # measured as pydantic sends it (compact JSON, UTF-8): canonical_json costs ~3 µs, and every event is
        # validated in the operator child, the wrapper and the dispatcher (~7 µs of CPU a block in a backfill)
        size = len(pydantic_core.to_json(self.payload, fallback=str))
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is {size} bytes; events carry at most {MAX_PAYLOAD_BYTES} (put data in outputs)")
        return self


class Event(Contract):
    """A stored event, as a consuming task receives it."""

    event_id: int
    dataset_uuid: UUID
    dataset_version: UUID
    kind: EventKind
    scope: EventScope
    payload: dict[str, Any]
    producer_task_id: UUID
    created_at: datetime
