"""The internal API as a worker meets it: attempt gating, late completions, and bad calls."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.stack import Stack, wait_for

SOURCE_ONLY = """
dag: gated
jobs:
  source:
    activation: source
    operator: noop
    max_attempts: 5
"""


def take_dispatched(stack: Stack, internal: httpx.Client) -> str:
    """The source run's task id, taken from the embedded transport as a worker would."""

    def poll() -> str | None:
        answer = internal.post("/internal/task-poll", json={"runtime": "ecs_python", "worker_id": "t", "wait_s": 1})
        assert answer.status_code == 200, answer.text
        ids = answer.json()["task_ids"]
        return ids[0] if ids else None

    return wait_for(poll, 20, "a dispatched task")


def fetch(internal: httpx.Client, task_id: str) -> dict[str, Any]:
    answer = internal.get("/internal/task-fetch", params={"task_id": task_id, "worker_id": "t"})
    assert answer.status_code == 200, answer.text
    payload: dict[str, Any] = answer.json()
    return payload


def call(payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "task_id": payload["task_id"],
        "attempt_id": payload["attempt_id"],
        "attempt_token": payload["attempt_token"],
        **extra,
    }


EVENT = {"scope": {"cursor": "1"}, "payload": {"x": 1}}


def test_a_stale_attempt_is_rejected_and_told_which_is_current(stack: Stack) -> None:
    stack.deploy(SOURCE_ONLY)
    with stack.internal() as internal:
        task_id = take_dispatched(stack, internal)
        first = fetch(internal, task_id)
        assert first["attempt_number"] == 1 and first["job"]["operator"] == "noop"
        second = fetch(internal, task_id)  # a duplicate delivery supersedes the first attempt
        assert second["attempt_number"] == 2

        for path, body in (
            ("/internal/events", call(first, events=[EVENT])),
            ("/internal/heartbeat", call(first)),
            ("/internal/task-complete", call(first, status="succeeded")),
        ):
            refused = internal.post(path, json=body)
            assert refused.status_code == 409, path
            assert f"the current attempt is #2 ({second['attempt_id']})" in refused.json()["detail"]

        emitted = internal.post("/internal/events", json=call(second, events=[EVENT, EVENT]))
        assert emitted.json() == {"accepted": 1, "duplicates": 1}
        done = internal.post("/internal/task-complete", json=call(second, status="succeeded", events=[EVENT]))
        assert done.status_code == 200
        assert done.json()["task_status"] == "Completed" and done.json()["duplicate_events"] == 1
        again = internal.post("/internal/task-complete", json=call(second, status="succeeded"))
        assert again.status_code == 409 and "already Completed" in again.json()["detail"]
    attempts = stack.sql("SELECT status, error FROM task_attempts ORDER BY attempt_number")
    assert [a["status"] for a in attempts] == ["Failed", "Succeeded"]
    assert "superseded" in attempts[0]["error"]


def test_a_late_completion_of_the_newest_attempt_is_accepted(stack: Stack) -> None:
    stack.deploy(SOURCE_ONLY)
    with stack.internal() as internal:
        task_id = take_dispatched(stack, internal)
        payload = fetch(internal, task_id)
        # no heartbeat: the 2 s lease expires and the reaper times the attempt out and schedules a retry
        wait_for(
            lambda: stack.sql("SELECT status FROM task_attempts")[0]["status"] == "TimedOut", 20, "the lease to expire"
        )
        late = internal.post("/internal/task-complete", json=call(payload, status="succeeded", events=[EVENT]))
        assert late.status_code == 200, late.text
        assert late.json()["task_status"] == "Completed"
        heartbeat = internal.post("/internal/heartbeat", json=call(payload))
        assert heartbeat.status_code == 200 or "Succeeded" in heartbeat.json()["detail"]
    [task] = stack.sql("SELECT status, attempt_count FROM tasks")
    assert task == {"status": "Completed", "attempt_count": 1}


def test_ids_a_worker_releases_unstarted_go_back_to_the_queue(stack: Stack) -> None:
    """A stopping worker hands back the ids it took ahead and did not start; a started one stays with its attempt."""
    stack.deploy(SOURCE_ONLY)
    with stack.internal() as internal:
        task_id = take_dispatched(stack, internal)
        released = internal.post("/internal/task-release", json={"task_ids": [task_id], "worker_id": "t"})
        assert released.status_code == 200 and released.json() == {"released": 1}
        assert take_dispatched(stack, internal) == task_id  # queued again, and dispatched again
        payload = fetch(internal, task_id)
        again = internal.post("/internal/task-release", json={"task_ids": [task_id], "worker_id": "t"})
        assert again.json() == {"released": 0}
    [task] = stack.sql("SELECT status, attempt_count FROM tasks")
    assert task == {"status": "Running", "attempt_count": 1} and payload["attempt_number"] == 1


def test_bad_internal_calls_get_clear_4xx(stack: Stack) -> None:
    stack.deploy(SOURCE_ONLY)
    with stack.internal() as internal:
        task_id = take_dispatched(stack, internal)
        payload = fetch(internal, task_id)

        unknown = internal.get("/internal/task-fetch", params={"task_id": str(uuid.uuid4())})
        assert unknown.status_code == 404 and "no task" in unknown.json()["detail"]
        not_uuid = internal.get("/internal/task-fetch", params={"task_id": "nope"})
        assert not_uuid.status_code == 400 and "task_id" in not_uuid.text

        wrong_token = internal.post("/internal/heartbeat", json={**call(payload), "attempt_token": "x" * 32})
        assert wrong_token.status_code == 403 and "token does not match" in wrong_token.json()["detail"]
        missing_token = internal.post(
            "/internal/heartbeat", json={k: v for k, v in call(payload).items() if k != "attempt_token"}
        )
        assert missing_token.status_code == 400 and "attempt_token" in missing_token.text

        malformed = internal.post(
            "/internal/task-complete", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400
        bad_status = internal.post("/internal/task-complete", json=call(payload, status="done"))
        assert bad_status.status_code == 400 and "status" in bad_status.text
        bad_output = internal.post("/internal/events", json=call(payload, events=[{**EVENT, "output": 3}]))
        assert bad_output.status_code == 400 and "events.0.output: 3 is out of range" in bad_output.json()["detail"]
        empty_scope = internal.post("/internal/events", json=call(payload, events=[{"scope": {}}]))
        assert empty_scope.status_code == 400 and "scope" in empty_scope.text
        bad_runtime = internal.post("/internal/task-poll", json={"runtime": "ecs_rust", "worker_id": "t"})
        assert bad_runtime.status_code == 400

    with httpx.Client(base_url=stack.dispatcher_url) as anonymous:
        assert anonymous.post("/internal/heartbeat", json=call(payload)).status_code == 401
    with stack.client() as user_token:  # an API token is not the service credential
        refused = user_token.post("/internal/heartbeat", json=call(payload))
        assert refused.status_code == 401 and "service credential" in refused.json()["detail"]
    assert "Traceback" not in (stack.processes[0].output())


def test_batch_calls_answer_each_item_like_its_single_call(stack: Stack) -> None:
    stack.deploy(SOURCE_ONLY)
    unknown = str(uuid.uuid4())
    with stack.internal() as internal:
        task_id = take_dispatched(stack, internal)
        fetched = internal.post("/internal/task-fetch-batch", json={"task_ids": [task_id, unknown], "worker_id": "t"})
        assert fetched.status_code == 200, fetched.text
        started, missing = fetched.json()["results"]
        assert started["payload"]["attempt_number"] == 1 and started["error"] is None
        assert missing == {
            "task_id": unknown,
            "payload": None,
            "canceled": False,
            "error": {"status_code": 404, "detail": f"no task {unknown}"},
        }
        payload = started["payload"]
        stale = {**call(payload), "attempt_id": str(uuid.uuid4()), "status": "succeeded"}
        completed = internal.post(
            "/internal/task-complete-batch", json={"completions": [stale, call(payload, status="succeeded")]}
        )
        refused, accepted = completed.json()["results"]
        assert refused["error"]["status_code"] == 409 and "the current attempt is #1" in refused["error"]["detail"]
        assert accepted["response"]["task_status"] == "Completed"
        empty = internal.post("/internal/task-complete-batch", json={"completions": []})
        assert empty.status_code == 400


SOURCE_AND_SINK = """
dag: batched
jobs:
  source: {activation: source, operator: noop}
  sink:
    operator: noop
    inputs: [{from: {job: source}}]
    scaling: {max_concurrency: 10}
"""


def test_a_batch_of_completions_counts_each_tasks_events_apart(stack: Stack) -> None:
    """One events insert serves a whole batch of completions; each task gets its own stored and duplicate counts."""
    stack.deploy(SOURCE_AND_SINK)
    with stack.internal() as internal:
        source = fetch(internal, take_dispatched(stack, internal))
        scopes = [{"cursor": str(i)} for i in range(3)]
        emitted = internal.post("/internal/events", json=call(source, events=[{"scope": s} for s in scopes]))
        assert emitted.json() == {"accepted": 3, "duplicates": 0}
        taken: list[str] = []

        def poll() -> list[str] | None:
            answer = internal.post("/internal/task-poll", json={"runtime": "ecs_python", "worker_id": "t", "wait_s": 1})
            taken.extend(answer.json()["task_ids"])
            return taken if len(taken) == 3 else None

        sink_ids = wait_for(poll, 20, "the sink's three tasks")
        fetched = internal.post("/internal/task-fetch-batch", json={"task_ids": sink_ids, "worker_id": "t"})
        payloads = [result["payload"] for result in fetched.json()["results"]]
        # task i emits its input's scope i + 1 times: one stored, i duplicates
        completions = [
            call(p, status="succeeded", events=[{"scope": p["input_event"]["scope"]}] * (i + 1))
            for i, p in enumerate(payloads)
        ]
        done = internal.post("/internal/task-complete-batch", json={"completions": completions})
        assert done.status_code == 200, done.text
        answers = {result["task_id"]: result["response"] for result in done.json()["results"]}
        for i, payload in enumerate(payloads):
            answer = answers[payload["task_id"]]
            assert (answer["task_status"], answer["accepted_events"], answer["duplicate_events"]) == ("Completed", 1, i)
    stored = stack.sql(
        "SELECT producer_task_id::text AS task_id, count(*) AS n FROM events"
        " WHERE producer_task_id = ANY(%(ids)s::uuid[]) GROUP BY producer_task_id",
        {"ids": sink_ids},
    )
    assert sorted((row["task_id"], row["n"]) for row in stored) == sorted((task_id, 1) for task_id in sink_ids)
