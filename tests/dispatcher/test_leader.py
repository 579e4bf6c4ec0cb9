"""Dispatcher HA: the loops run in the replica holding the advisory lock; another takes over when it dies."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import httpx

from tests.support.stack import running_stack, wait_for


def is_leader(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/healthz", timeout=2).json()["leader"])
    except httpx.HTTPError:
        return False


def test_the_follower_takes_over_when_the_leader_is_killed(database_url: str, tmp_path: Path) -> None:
    with running_stack(database_url, tmp_path / "stack") as stack:
        first = stack.start_dispatcher()
        wait_for(lambda: is_leader(first.url), 10, "the first dispatcher to lead")
        second_url = stack.start_dispatcher().url
        assert not is_leader(second_url)
        # workers talk to the follower (behind a load balancer they would talk to both)
        stack.env["TRACE_DISPATCHER_URL"] = second_url
        stack.dispatcher_url = second_url
        stack.deploy(
            f"""
dag: ha
jobs:
  source:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:count_to", count: 40}}
  work:
    operator: python
    inputs: [{{from: {{job: source}}}}]
    scaling: {{max_concurrency: 4}}
    config: {{function: "tests.support.udfs:append_run", dir: "{tmp_path}", sleep_s: 0.1}}
"""
        )
        stack.start_worker(concurrency=4)
        runs = tmp_path / "runs.log"
        wait_for(lambda: runs.exists() and len(runs.read_text().split()) >= 8, 30, "work to be under way")
        first.kill(signal.SIGKILL)
        wait_for(lambda: is_leader(second_url), 10, "the follower to take over")
        stack.wait_jobs_done({"source": 1, "work": 40}, timeout_s=60)

    assert set(stack.task_statuses("work")) == {"Completed"}
    completions = Counter(runs.read_text().split())
    assert sorted(completions) == sorted(str(n) for n in range(40)), "a task was lost"
    assert set(completions.values()) == {1}, f"tasks ran twice to completion: {completions}"
    succeeded = stack.sql(
        "SELECT task_id, count(*) AS n FROM task_attempts WHERE status = 'Succeeded' GROUP BY task_id"
    )
    assert {row["n"] for row in succeeded} == {1}
