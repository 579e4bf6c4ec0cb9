"""What the scheduler promises, observed from operators' own records: concurrency limits, PerPartition
order, worker-pool slots, cancellation and backpressure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack, wait_for


def records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in directory.glob("*.json")]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def fan_out(dag: str, directory: Path, count: int, reactive: str, partitions: int = 0) -> str:
    return f"""
dag: {dag}
jobs:
  source:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:count_to", count: {count}, partitions: {partitions}}}
  work:
    operator: python
    inputs: [{{from: {{job: source}}}}]
{reactive}
"""


def test_max_concurrency_is_never_exceeded(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        fan_out(
            "limited",
            tmp_path,
            12,
            f"    scaling: {{max_concurrency: 3}}\n"
            f'    config: {{function: "tests.support.udfs:record_interval", dir: "{tmp_path}", sleep_s: 0.3}}',
        )
    )
    stack.start_worker(concurrency=6)
    stack.wait_jobs_done({"source": 1, "work": 12})
    seen = records(tmp_path)
    assert len(seen) == 12
    assert max_overlap([(r["start"], r["end"]) for r in seen]) == 3


def test_per_update_with_concurrency_one_keeps_event_order(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        fan_out(
            "ordered",
            tmp_path,
            8,
            f'    config: {{function: "tests.support.udfs:record_interval", dir: "{tmp_path}", sleep_s: 0.05}}',
        )
    )
    stack.start_worker(concurrency=4)
    stack.wait_jobs_done({"source": 1, "work": 8})
    by_start = sorted(records(tmp_path), key=lambda r: r["start"])
    assert [r["n"] for r in by_start] == list(range(8))


def test_per_partition_runs_each_partition_in_order_and_partitions_in_parallel(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        fan_out(
            "partitioned",
            tmp_path,
            15,
            "    execution_strategy: PerPartition\n"
            "    scaling: {max_concurrency: 3}\n"
            f'    config: {{function: "tests.support.udfs:record_interval", dir: "{tmp_path}", sleep_s: 0.2}}',
            partitions=3,
        )
    )
    stack.start_worker(concurrency=6)
    stack.wait_jobs_done({"source": 1, "work": 15})
    seen = records(tmp_path)
    for partition in ("p0", "p1", "p2"):
        runs = sorted((r for r in seen if r["partition"] == partition), key=lambda r: r["start"])
        assert [r["n"] for r in runs] == sorted(r["n"] for r in runs), f"{partition} ran out of order"
        assert max_overlap([(r["start"], r["end"]) for r in runs]) == 1, f"{partition} ran two at once"
    assert max_overlap([(r["start"], r["end"]) for r in seen]) > 1, "partitions never ran in parallel"


def test_worker_pool_slots_inject_env_and_are_released_on_failure(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        f"""
dag: pooled
worker_pools:
  rpc:
    - env: {{SLOT: one}}
    - env: {{SLOT: two}}
jobs:
  source:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:count_to", count: 10}}
  work:
    operator: python
    inputs: [{{from: {{job: source}}}}]
    worker_pool: rpc
    max_attempts: 1
    scaling: {{max_concurrency: 8}}
    config: {{function: "tests.support.udfs:record_interval", dir: "{tmp_path}", sleep_s: 0.2, fail: [1, 4, 7]}}
"""
    )
    stack.start_worker(concurrency=6)
    stack.wait_jobs_done({"source": 1, "work": 10})
    seen = records(tmp_path)
    assert {r["slot"] for r in seen} == {"one", "two"}
    assert max_overlap([(r["start"], r["end"]) for r in seen]) == 2  # min(max_concurrency 8, 2 slots)
    for slot in ("one", "two"):
        mine = [(r["start"], r["end"]) for r in seen if r["slot"] == slot]
        assert max_overlap(mine) == 1, f"slot {slot} was leased twice at once"
    assert stack.task_statuses("work").count("Failed") == 3
    assert stack.sql("SELECT count(*) AS n FROM slot_leases") == [{"n": 0}]
    [failed] = stack.sql("SELECT last_error FROM tasks WHERE status = 'Failed' LIMIT 1")
    assert "failing on purpose" in failed["last_error"]


def test_cancel_a_queued_and_a_running_task(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        f"""
dag: cancelable
jobs:
  source:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:count_to", count: 3}}
  work:
    operator: python
    inputs: [{{from: {{job: source}}}}]
    config: {{function: "tests.support.udfs:sleep_long", dir: "{tmp_path}"}}
"""
    )
    stack.start_worker(concurrency=2)
    wait_for(lambda: (tmp_path / "started").exists(), 30, "the first task to start")
    tasks = {
        row["status"]: row["task_id"]
        for row in stack.sql(
            "SELECT t.task_id, t.status FROM tasks t JOIN jobs j USING (job_id) WHERE j.job_name = 'work'"
        )
    }
    with stack.client() as api:
        queued = api.post(f"/v1/tasks/{tasks['Queued']}/cancel")
        assert queued.json() == {"task_id": str(tasks["Queued"]), "status": "Canceled", "cancel_requested": True}
        running = api.post(f"/v1/tasks/{tasks['Running']}/cancel")
        assert running.json()["status"] == "Running" and running.json()["cancel_requested"]
        wait_for(
            lambda: api.get(f"/v1/tasks/{tasks['Running']}").json()["status"] == "Canceled",
            5,  # heartbeats every 0.3 s: the worker stops the operator at the next one
            "the running task to stop",
        )
        detail = api.get(f"/v1/tasks/{tasks['Running']}").json()
        assert [a["status"] for a in detail["attempts"]] == ["Canceled"]
        again = api.post(f"/v1/tasks/{tasks['Queued']}/cancel")
        assert again.status_code == 409 and "already Canceled" in again.json()["detail"]
    assert stack.sql("SELECT count(*) AS n FROM task_attempts WHERE task_id = %(t)s", {"t": tasks["Queued"]}) == [
        {"n": 0}
    ]


@pytest.mark.timeout(400)
def test_backpressure_keeps_a_flood_in_postgres(stack: Stack) -> None:
    stack.stop()
    stack.processes.clear()
    stack.dispatcher_url = ""
    stack.start_dispatcher({"TRACE_INFLIGHT_LIMIT": "16"})
    stack.deploy(
        """
dag: flood
jobs:
  source:
    activation: source
    operator: python
    config: {function: "tests.support.udfs:count_to", count: 10000}
  sink:
    operator: noop
    inputs: [{from: {job: source}}]
    scaling: {max_concurrency: 1000}
"""
    )
    stack.start_worker(concurrency=8)
    stack.start_worker(concurrency=8)
    peak_in_flight, saw_backlog = 0, False

    def drained() -> bool:
        nonlocal peak_in_flight, saw_backlog
        [row] = stack.sql(
            """SELECT count(*) FILTER (WHERE status IN ('Dispatched', 'Running')) AS in_flight,
                      count(*) FILTER (WHERE status = 'Queued') AS queued,
                      count(*) FILTER (WHERE status = 'Completed') AS completed
               FROM tasks t JOIN jobs j USING (job_id) WHERE j.job_name = 'sink'"""
        )
        peak_in_flight = max(peak_in_flight, row["in_flight"])
        saw_backlog = saw_backlog or row["queued"] > 100
        return bool(row["completed"] == 10000)

    wait_for(drained, 360, "10,000 tasks to drain")
    assert peak_in_flight <= 16
    assert saw_backlog, "the flood never queued up in Postgres"
