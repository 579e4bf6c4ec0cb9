"""Deterministic keys: the same inputs give the same key in every process, retry and rematerialization."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal values, equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def fingerprint(value: Any) -> bytes:
    """SHA-256 of the canonical JSON of `value` (32 bytes)."""
    return hashlib.sha256(canonical_json(value)).digest()


def scope_key(cursor: str | None, partition_key: str | None, start: int | None, end: int | None) -> str:
    """The canonical text of an event scope; with producer task and dataset it is the event dedup key."""
    if cursor is None and partition_key is None and start is None:
        raise ValueError("a scope needs a cursor, a partition_key or a range")
    if (start is None) != (end is None):
        raise ValueError("a range needs both start and end")
    return canonical_json({"c": cursor, "p": partition_key, "r": None if start is None else [start, end]}).decode()


def delivery_idempotency_key(
    org_id: UUID, dag_name: str, job_name: str, alert_dedup_key: str, destination: dict[str, Any]
) -> str:
    """Key of one alert delivery. It leaves out dataset versions and task ids on purpose: a retry or a
    rematerialization that raises the same alert for the same destination must not send it twice."""
    parts = {
        "org": str(org_id),
        "dag": dag_name,
        "job": job_name,
        "alert": alert_dedup_key,
        "to": destination,
    }
    return hashlib.sha256(canonical_json(parts)).hexdigest()
