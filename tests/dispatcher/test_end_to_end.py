"""A DAG of python operators deployed over HTTP runs through real dispatcher and worker processes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.support.dags import EXAMPLES
from tests.support.stack import Stack, wait_for

HELLO = (EXAMPLES / "hello.yaml").read_text()


def test_deploy_run_and_inspect(stack: Stack) -> None:
    deployed = stack.deploy(HELLO)
    assert deployed["version"] == 1
    assert set(deployed["source_runs"]) == {"numbers"}
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "doubled": 5, "sink": 5})
    assert set(stack.task_statuses("doubled") + stack.task_statuses("sink")) == {"Completed"}
    payloads = stack.sql(
        """SELECT e.payload->>'n' AS n FROM events e JOIN dataset_versions dv USING (dataset_version)
           JOIN jobs j ON j.job_id = dv.job_id WHERE j.job_name = 'doubled' ORDER BY 1::int"""
    )
    assert sorted(int(row["n"]) for row in payloads) == [0, 2, 4, 6, 8]

    with stack.client() as api:
        dag = api.get("/v1/dags/hello").json()
        assert dag["active_version"] == 1
        assert {job["job_name"]: job["tasks"] for job in dag["jobs"]}["doubled"] == {"Completed": 5}
        assert [d["dag_name"] for d in api.get("/v1/dags").json()] == ["hello"]

        first = api.get("/v1/tasks", params={"dag": "hello", "limit": 4}).json()
        assert len(first["tasks"]) == 4 and first["next_cursor"]
        seen = [t["task_id"] for t in first["tasks"]]
        cursor = first["next_cursor"]
        while cursor:
            page = api.get("/v1/tasks", params={"dag": "hello", "limit": 4, "cursor": cursor}).json()
            seen += [t["task_id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
        assert len(seen) == len(set(seen)) == 11
        only_sink = api.get("/v1/tasks", params={"job": "sink", "status": "Completed"}).json()["tasks"]
        assert len(only_sink) == 5

        detail = api.get(f"/v1/tasks/{seen[0]}").json()
        assert detail["status"] == "Completed"
        assert [a["status"] for a in detail["attempts"]] == ["Succeeded"]

        metrics = api.get("/metrics").text
        assert "trace_dispatched_total" in metrics and "trace_dispatch_latency_seconds_bucket" in metrics


def test_a_killed_worker_is_retried_without_duplicate_events(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        f"""
dag: crashy
jobs:
  source:
    activation: source
    operator: python
    max_attempts: 3
    config: {{function: "tests.support.udfs:emit_then_hang_first_time", dir: "{tmp_path}"}}
  sink:
    operator: noop
    inputs: [{{from: {{job: source}}}}]
"""
    )
    worker = stack.start_worker()
    wait_for(lambda: (tmp_path / "hanging").exists(), 30, "the source to hang")
    wait_for(lambda: len(stack.task_statuses("sink")) == 3, 30, "the first attempt's events")
    worker.kill(signal.SIGKILL)
    stack.start_worker()
    stack.wait_jobs_done({"source": 1, "sink": 3}, timeout_s=60)
    [source] = stack.sql("SELECT task_id, status, attempt_count FROM tasks WHERE input_event_id IS NULL")
    assert (source["status"], source["attempt_count"]) == ("Completed", 2)
    attempts = stack.sql(
        "SELECT status FROM task_attempts WHERE task_id = %(t)s ORDER BY attempt_number", {"t": source["task_id"]}
    )
    assert [a["status"] for a in attempts] == ["TimedOut", "Succeeded"]
    events = stack.sql("SELECT scope_cursor FROM events WHERE producer_task_id = %(t)s", {"t": source["task_id"]})
    assert sorted(e["scope_cursor"] for e in events) == ["0", "1", "2"]


def test_an_operator_finds_neither_credential_nor_token(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "snoop"
    out.mkdir()
    stack.deploy(
        f"""
dag: nosy
jobs:
  snoop:
    activation: source
    operator: python
    config:
      function: "tests.support.udfs:snoop"
      dir: "{out}"
      scan: "{stack.home}"
      needles: {{service_token: "{stack.service_token}"}}
"""
    )
    stack.start_worker()
    stack.wait_jobs_done({"snoop": 1})
    [attempt] = stack.sql("SELECT attempt_token_hash FROM task_attempts")
    report = json.loads((out / "found.json").read_text())
    assert report["found"] == {"service_token": []}, report
    assert any("/proc/" in place and "environ" in place for place in report["looked_in"])
    # the attempt token: only its hash is stored; the operator saw neither the token nor the hash
    assert bytes(attempt["attempt_token_hash"]).hex() not in json.dumps(report)


def test_sigterm_drains_running_tasks_before_the_worker_exits(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(
        f"""
dag: draining
jobs:
  source:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:count_to", count: 1}}
  slow:
    operator: python
    inputs: [{{from: {{job: source}}}}]
    config: {{function: "tests.support.udfs:record_interval", dir: "{tmp_path}", sleep_s: 2}}
"""
    )
    worker = stack.start_worker()
    wait_for(lambda: stack.task_statuses("slow") == ["Running"], 30, "the slow task to start")
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(timeout=30) == 0
    assert stack.task_statuses("slow") == ["Completed"]
    assert (tmp_path / "0.json").exists()
    assert "worker.draining" in worker.output() and "worker.stopped" in worker.output()
