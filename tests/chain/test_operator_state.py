"""`/internal/operator-state`: gated like every attempt call; a save is a compare-and-swap on `revision` that
stores its events in the same transaction, or neither."""

from __future__ import annotations

from tests.dispatcher.test_worker_contract import call, fetch, take_dispatched
from tests.support.stack import Stack

SOURCE = """
dag: stateful
jobs:
  source:
    activation: source
    operator: noop
    max_attempts: 5
"""
BLOCK = {"scope": {"cursor": "0:0xaa", "range": {"start": 7, "end": 7}}, "payload": {"number": 7}}


def test_state_is_read_and_swapped_with_its_events_atomically(stack: Stack) -> None:
    stack.deploy(SOURCE)
    with stack.internal() as internal:
        payload = fetch(internal, take_dispatched(stack, internal))
        read = internal.post("/internal/operator-state/read", json=call(payload))
        assert read.status_code == 200 and read.json() == {"state": None, "revision": 0}

        first = internal.put(
            "/internal/operator-state", json=call(payload, expected_revision=0, state={"n": 1}, events=[BLOCK])
        )
        assert first.status_code == 200, first.text
        assert first.json() == {"revision": 1, "accepted_events": 1, "duplicate_events": 0}

        # a writer that computed from revision 0 again loses, and its events are not stored
        other = {**BLOCK, "scope": {"cursor": "0:0xbb", "range": {"start": 8, "end": 8}}}
        lost = internal.put(
            "/internal/operator-state", json=call(payload, expected_revision=0, state={"n": 9}, events=[other])
        )
        assert lost.status_code == 412, lost.text
        assert lost.json()["extra"] == {"revision": 1}
        assert "is at revision 1, not 0" in lost.json()["detail"]
        stale = internal.put("/internal/operator-state", json=call(payload, expected_revision=5, state={"n": 9}))
        assert stale.status_code == 412 and stale.json()["extra"] == {"revision": 1}

        second = internal.put(
            "/internal/operator-state", json=call(payload, expected_revision=1, state={"n": 2}, events=[BLOCK])
        )
        assert second.json() == {"revision": 2, "accepted_events": 0, "duplicate_events": 1}  # re-sent: deduplicated
        assert internal.post("/internal/operator-state/read", json=call(payload)).json() == {
            "state": {"n": 2},
            "revision": 2,
        }

        # a new attempt of the task reads what the last one saved; the superseded attempt may no longer write
        retry = fetch(internal, payload["task_id"])
        assert internal.post("/internal/operator-state/read", json=call(retry)).json()["revision"] == 2
        refused = internal.put("/internal/operator-state", json=call(payload, expected_revision=2, state={"n": 3}))
        assert refused.status_code == 409 and "not the current attempt" in refused.json()["detail"]

    events = stack.sql("SELECT scope_cursor, range_start, payload FROM events ORDER BY event_id")
    assert events == [{"scope_cursor": "0:0xaa", "range_start": 7, "payload": {"number": 7}}]
    [row] = stack.sql("SELECT state, revision, updated_by_task_id::text AS task FROM operator_state")
    assert row == {"state": {"n": 2}, "revision": 2, "task": payload["task_id"]}


def test_bad_state_calls_get_clear_4xx_and_store_nothing(stack: Stack) -> None:
    stack.deploy(SOURCE)
    with stack.internal() as internal:
        payload = fetch(internal, take_dispatched(stack, internal))
        bad_output = internal.put(
            "/internal/operator-state",
            json=call(payload, expected_revision=0, state={}, events=[{**BLOCK, "output": 3}]),
        )
        assert bad_output.status_code == 400 and "events.0.output: 3 is out of range" in bad_output.json()["detail"]
        huge = internal.put(
            "/internal/operator-state", json=call(payload, expected_revision=0, state={"x": "y" * 1_000_001})
        )
        assert huge.status_code == 400 and "operator state holds at most 1000000" in huge.text
        negative = internal.put("/internal/operator-state", json=call(payload, expected_revision=-1, state={}))
        assert negative.status_code == 400 and "expected_revision" in negative.text
        wrong_token = internal.post("/internal/operator-state/read", json={**call(payload), "attempt_token": "x" * 32})
        assert wrong_token.status_code == 403
        done = internal.post("/internal/task-complete", json=call(payload, status="succeeded"))
        assert done.status_code == 200
        finished = internal.put("/internal/operator-state", json=call(payload, expected_revision=0, state={}))
        assert finished.status_code == 409 and "cannot save operator state" in finished.json()["detail"]
    assert stack.sql("SELECT count(*) AS n FROM operator_state") == [{"n": 0}]
    assert stack.sql("SELECT count(*) AS n FROM events") == [{"n": 0}]
