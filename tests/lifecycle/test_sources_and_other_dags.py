"""Rebuilds of a changed source (it catches up with the head of the source it replaces while both run) and of
jobs reading another DAG's published dataset (they start from its start)."""

from __future__ import annotations

from pathlib import Path

from tests.lifecycle.conftest import Reader, dag_status, lifecycle_dag, version_jobs, wait_active
from tests.support.stack import Stack, wait_for

ECHO = """
dag: echo
jobs:
  echo:
    operator: sql
    inputs: [{{from: {{dataset: scaled}}}}]
    config: {{query: "select n, value * {times} as value from input"}}
    outputs: [{{storage: s3}}]
publish:
  - {{job: echo, dataset: echo}}
"""


def source_run(stack: Stack, job_id: str) -> dict[str, object]:
    [run] = stack.sql(
        "SELECT status, last_error FROM tasks WHERE job_id = %(j)s AND input_event_id IS NULL", {"j": job_id}
    )
    return run


def test_a_rebuilt_live_source_catches_up_with_the_one_it_replaces(
    stack: Stack, reader: Reader, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    stack.deploy(lifecycle_dag(tmp_path, source=f'stop: "{stop}", interval_s: 1'))
    stack.start_worker(concurrency=8)
    wait_for(lambda: len(reader.rows("scaled")) >= 6, 60, "version 1 to follow its source")
    v1 = version_jobs(stack, 1)

    # the new source starts from 0 and runs fast until 25, then follows at the old pace: it overtakes the old one
    second = stack.deploy(lifecycle_dag(tmp_path, source=f'stop: "{stop}", interval_s: 1, burst: 25'))
    assert second["rebuild_jobs"] == ["mirror", "numbers", "scaled", "total"]
    v2 = version_jobs(stack, 2)
    rebuilding = dag_status(stack)["rebuild"]
    if rebuilding is not None:  # it may already have caught up
        [source] = [job for job in rebuilding["jobs"] if job["job"] == "numbers"]
        assert source["activation"] == "source" and source["outputs"][0]["replaced_head"] is not None
    wait_active(stack, 2)
    # the replaced source is stopped through its heartbeat; the new one runs on
    wait_for(lambda: source_run(stack, v1["numbers"]["job_id"])["status"] == "Canceled", 15, "the old source to stop")
    assert source_run(stack, v2["numbers"]["job_id"])["status"] == "Running"
    rows = reader.rows("scaled")
    assert len(rows) >= 25 and [r["n"] for r in rows] == list(range(len(rows)))
    stop.write_text("")


def test_jobs_reading_another_dag_start_from_its_start(stack: Stack, reader: Reader, tmp_path: Path) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    first = stack.deploy(ECHO.format(times=10))  # a new DAG: its job reads the four events scaled already has
    assert first["status"] == "active"
    wait_for(lambda: len(reader.rows("echo")) == 4, 30, "echo to read scaled from its start")
    assert [r["value"] for r in reader.rows("echo")] == [0, 20, 40, 60]

    second = stack.deploy(ECHO.format(times=100))
    assert second["status"] == "rebuilding" and second["rebuild_jobs"] == ["echo"]
    wait_active(stack, 2, dag="echo")
    assert [r["value"] for r in reader.rows("echo")] == [0, 200, 400, 600]
