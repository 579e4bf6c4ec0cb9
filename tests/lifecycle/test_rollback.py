"""Rollback: after a cutover it restores the previous version and pointer set in one step and takes the bad
version out of service (waiting tasks canceled, a running one stopped through its heartbeat); during a rebuild it
aborts the rebuild."""

from __future__ import annotations

import os
from pathlib import Path

from tests.lifecycle.conftest import Reader, dag_status, job_tasks, lifecycle_dag, version_jobs, wait_active
from tests.support.stack import Stack, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_rollback_after_cutover_restores_old_data_and_stops_the_bad_version(
    stack: Stack, reader: Reader, tmp_path: Path
) -> None:
    stop, pause, hang = tmp_path / "stop", tmp_path / "pause", tmp_path / "hang"
    live = f'stop: "{stop}", pause: "{pause}", interval_s: 0.1'
    stack.deploy(lifecycle_dag(tmp_path, source=live))
    stack.start_worker(concurrency=6)
    wait_for(lambda: len(reader.rows("scaled")) >= 5, 60, "version 1 to process some numbers")
    v1 = version_jobs(stack, 1)

    second = stack.deploy(lifecycle_dag(tmp_path, source=live, factor=3, scaled_extra=f', hang: "{hang}"'))
    assert second["status"] == "rebuilding"
    wait_active(stack, 2)  # the source kept running: the rebuild caught up with a round, then cut over
    v2 = version_jobs(stack, 2)
    wait_for(
        lambda: any(r["value"] == 3 * r["n"] and r["n"] > 0 for r in reader.rows("scaled")),
        30,
        "version 2's data to be served",
    )

    # the bad version's job hangs on the next number; what follows waits behind it
    pause.write_text("")
    hang.write_text("")
    pause.unlink()
    wait_for(lambda: list(tmp_path.glob("hanging-*")), 30, "a task of version 2 to hang")
    wait_for(lambda: "Queued" in job_tasks(stack, v2["scaled"]["job_id"]), 30, "tasks of version 2 to wait")
    pause.write_text("")
    [marker] = list(tmp_path.glob("hanging-*"))
    hanging_pid = int(marker.read_text())

    with stack.client() as api:
        rolled = api.post("/v1/dags/lc/rollback")
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert (body["active_version"], body["rolled_back_version"], body["aborted_rebuild"]) == (1, 2, None)
    assert body["canceled_tasks"] >= 1 and body["stopping_tasks"] >= 1
    # one step: readers see version 1 again, and nothing version 2 wrote
    rows = reader.query("select n, value from scaled")
    assert rows and all(r["value"] == 2 * r["n"] for r in rows)
    statuses = job_tasks(stack, v2["scaled"]["job_id"])
    assert "Queued" not in statuses and "Dispatched" not in statuses
    canceled = stack.sql(
        "SELECT last_error FROM tasks WHERE job_id = %(j)s AND status = 'Canceled'", {"j": v2["scaled"]["job_id"]}
    )
    assert canceled and all("rolled back" in row["last_error"] for row in canceled)

    # the running task is told to stop at its next heartbeat: the worker stops the operator and reports it
    hanging_n = int(marker.name.split("-")[1])
    [running] = stack.sql(
        """SELECT t.task_id FROM tasks t JOIN events e ON e.event_id = t.input_event_id
           WHERE t.job_id = %(j)s AND e.scope_cursor = %(n)s""",
        {"j": v2["scaled"]["job_id"], "n": str(hanging_n)},
    )
    wait_for(
        lambda: (
            stack.sql("SELECT status FROM tasks WHERE task_id = %(t)s", {"t": running["task_id"]})[0]["status"]
            == "Canceled"
        ),
        10,
        "the running task to stop",
    )
    attempts = stack.sql("SELECT status FROM task_attempts WHERE task_id = %(t)s", {"t": running["task_id"]})
    assert [a["status"] for a in attempts] == ["Canceled"]  # stopped cooperatively, not by lease expiry
    wait_for(lambda: not _alive(hanging_pid), 10, "the operator child to be stopped")

    # version 1's jobs catch up on what they missed while retired, and version 2's get no new work
    def produced() -> int:
        [numbers] = stack.sql(
            "SELECT count(*) AS n FROM events e WHERE e.dataset_version = %(v)s::uuid",
            {"v": v1["numbers"]["outputs"][0][1]},
        )
        return int(numbers["n"])

    at_rollback, v2_tasks = produced(), len(job_tasks(stack, v2["scaled"]["job_id"]))
    pause.unlink()
    wait_for(lambda: produced() >= at_rollback + 5, 30, "five more numbers")
    stop.write_text("")
    # no live run at all, not only none Running: a run whose lease expired under load waits Queued for its retry,
    # which resumes from its cursor and may emit one more number before it sees the stop file
    unfinished = ("Queued", "Dispatched", "Running")
    wait_for(
        lambda: sum(dag_status(stack)["jobs"][0]["tasks"].get(s, 0) for s in unfinished) == 0, 30, "the source to stop"
    )
    total = produced()
    wait_for(lambda: len(reader.rows("scaled")) == total, 60, "version 1 to catch up")
    rows = reader.query("select n, value from scaled order by n")
    assert [r["n"] for r in rows] == list(range(total))
    assert all(r["value"] == 2 * r["n"] for r in rows)
    wait_for(lambda: len(reader.rows("total")) == total, 60, "total to catch up")
    assert not [s for s in job_tasks(stack, v2["scaled"]["job_id"]) if s not in {"Completed", "Canceled"}]
    assert len(job_tasks(stack, v2["scaled"]["job_id"])) == v2_tasks
    status = dag_status(stack)
    assert [(v["version"], v["status"]) for v in status["versions"]] == [(2, "rolled_back"), (1, "active")]


def test_rollback_during_a_rebuild_aborts_it(stack: Stack, reader: Reader, tmp_path: Path) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    gate = tmp_path / "never-opened"
    stack.deploy(lifecycle_dag(tmp_path, factor=5, scaled_extra=f', gate: "{gate}"'))
    v2 = version_jobs(stack, 2)
    wait_for(lambda: "Running" in job_tasks(stack, v2["scaled"]["job_id"]), 30, "the rebuild to start")

    with stack.client() as api:
        aborted = api.post("/v1/dags/lc/rollback")
        assert aborted.status_code == 200, aborted.text
        assert aborted.json()["aborted_rebuild"] == 2 and aborted.json()["rolled_back_version"] is None
        assert aborted.json()["active_version"] == 1
        again = api.post("/v1/dags/lc/rollback")
    assert again.status_code == 409 and "no previous version" in again.json()["detail"]
    wait_for(lambda: set(job_tasks(stack, v2["scaled"]["job_id"])) == {"Canceled"}, 15, "the rebuild's tasks to end")
    status = dag_status(stack)
    assert status["active_version"] == 1 and status["rebuild"] is None
    assert [(v["version"], v["status"]) for v in status["versions"]] == [(2, "rolled_back"), (1, "active")]
    assert reader.query("select sum(value) as v from scaled") == [{"v": 12}]
