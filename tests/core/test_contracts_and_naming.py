"""Contracts reject what they should; derived names and paths follow SPEC §5."""

from __future__ import annotations

import re
import uuid

import pytest
from pydantic import TypeAdapter, ValidationError

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.internal import (
    EmitEventsRequest,
    TaskCanceled,
    TaskCompleteRequest,
    TaskFetchResponse,
    TaskPollRequest,
)
from trace_core.idempotency import delivery_idempotency_key, scope_key
from trace_core.naming import dataset_table_name
from trace_core.storage import dataset_version_prefix, join_root, part_file_key, range_file_key

ORG, DS, VER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
ATTEMPT = {"task_id": str(uuid.uuid4()), "attempt_id": str(uuid.uuid4()), "attempt_token": "t" * 32}


def test_parquet_paths_follow_the_spec() -> None:
    assert range_file_key(ORG, DS, VER, 100, 199) == f"org/{ORG}/dataset/{DS}/version/{VER}/100_199.parquet"
    assert dataset_version_prefix(ORG, DS, VER) == f"org/{ORG}/dataset/{DS}/version/{VER}"
    assert join_root("s3://bucket/trace/", "org/x") == "s3://bucket/trace/org/x"
    with pytest.raises(ValueError, match="start <= end"):
        range_file_key(ORG, DS, VER, 5, 4)
    with pytest.raises(ValueError, match="file part"):
        part_file_key(ORG, DS, VER, "../etc")


def test_table_names_come_from_uuid_and_version_only() -> None:
    name = dataset_table_name(DS, VER)
    assert re.fullmatch(r"ds_[a-z2-7]{26}_[a-z2-7]{26}", name) and len(name) <= 63
    assert dataset_table_name(DS, uuid.uuid4()) != name


def test_scopes() -> None:
    assert EventScope(range={"start": 1, "end": 9}).key == scope_key(None, None, 1, 9)
    assert EventScope(cursor="9").key != EventScope(partition_key="9").key
    with pytest.raises(ValidationError, match="needs a cursor, a partition_key or a range"):
        EventScope()
    with pytest.raises(ValidationError, match="before start"):
        EventScope(range={"start": 9, "end": 1})


def test_emitted_events_are_small() -> None:
    with pytest.raises(ValidationError, match="at most 16384"):
        EmittedEvent(scope={"cursor": "1"}, payload={"blob": "x" * 20_000})
    # the limit is on the payload's compact JSON in UTF-8 bytes: {"blob":"…"} is 11 bytes around the text
    EmittedEvent(scope={"cursor": "1"}, payload={"blob": "x" * (16_384 - 11)})
    with pytest.raises(ValidationError, match="payload is 16385 bytes"):
        EmittedEvent(scope={"cursor": "1"}, payload={"blob": "é" + "x" * (16_384 - 12)})


def test_internal_requests_reject_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TaskCompleteRequest.model_validate({**ATTEMPT, "status": "succeeded", "colour": 1})
    with pytest.raises(ValidationError, match="status"):
        TaskCompleteRequest.model_validate({**ATTEMPT, "status": "done"})
    with pytest.raises(ValidationError, match="at least 1"):
        EmitEventsRequest.model_validate({**ATTEMPT, "events": []})
    with pytest.raises(ValidationError, match="runtime"):
        TaskPollRequest.model_validate({"runtime": "ecs_rust", "worker_id": "w"})


def test_task_fetch_answer_is_discriminated_on_status() -> None:
    answer = TypeAdapter(TaskFetchResponse).validate_python({"status": "Canceled", "task_id": str(uuid.uuid4())})
    assert isinstance(answer, TaskCanceled)


def test_delivery_keys_are_deterministic_and_ignore_versions() -> None:
    args = (ORG, "eth", "route", "whale:0xabc", {"kind": "slack", "channel": "#alerts"})
    assert delivery_idempotency_key(*args) == delivery_idempotency_key(*args)
    other = (ORG, "eth", "route", "whale:0xabc", {"channel": "#alerts", "kind": "pagerduty"})
    assert delivery_idempotency_key(*args) != delivery_idempotency_key(*other)
