"""Redeploys that rebuild nothing (execution-only edits), that supersede a rebuild in progress, that deploy
nothing new, and `?rematerialize=none`."""

from __future__ import annotations

from pathlib import Path

from tests.dispatcher.test_worker_contract import call, fetch, take_dispatched
from tests.lifecycle.conftest import Reader, dag_status, job_tasks, lifecycle_dag, version_jobs, wait_active
from tests.support.stack import Stack, wait_for

SOURCE_AND_SINK = """
dag: tuned
jobs:
  source:
    activation: source
    operator: noop
  sink:
    operator: noop
    inputs: [{{from: {{job: source}}}}]
    scaling: {{max_concurrency: {concurrency}}}
"""


def dispatched(stack: Stack, job: str) -> int:
    rows = stack.sql(
        """SELECT count(*) AS n FROM tasks t JOIN jobs j USING (job_id)
           WHERE j.job_name = %(job)s AND t.status = 'Dispatched'""",
        {"job": job},
    )
    return int(rows[0]["n"])


def test_an_execution_only_edit_applies_at_once_without_a_rebuild(stack: Stack) -> None:
    stack.deploy(SOURCE_AND_SINK.format(concurrency=1))
    v1 = version_jobs(stack, 1, "tuned")
    with stack.internal() as internal:  # play the worker of the source run: six events
        payload = fetch(internal, take_dispatched(stack, internal))
        events = [{"scope": {"cursor": str(n)}} for n in range(6)]
        done = internal.post("/internal/task-complete", json=call(payload, status="succeeded", events=events))
        assert done.status_code == 200, done.text
    # no worker takes them: what the scheduler hands out shows the job's concurrency
    wait_for(lambda: dispatched(stack, "sink") == 1, 20, "one sink task to be dispatched")

    second = stack.deploy(SOURCE_AND_SINK.format(concurrency=4))
    assert (second["version"], second["status"]) == (2, "active")
    assert second["changed_jobs"] == ["sink"] and second["changes"] == {"sink": ["scaling"]}
    assert second["rebuild_jobs"] == []
    assert {k: {**v, "rebuilds": False} for k, v in v1.items()} == version_jobs(stack, 2, "tuned")
    wait_for(lambda: dispatched(stack, "sink") == 4, 20, "four sink tasks to be dispatched")
    assert len(job_tasks(stack, v1["sink"]["job_id"])) == 6  # the same tasks: nothing was rebuilt
    status = dag_status(stack, "tuned")
    assert status["active_version"] == 2 and status["rebuild"] is None
    assert [(v["version"], v["status"]) for v in status["versions"]] == [(2, "active"), (1, "retired")]

    with stack.client() as api:
        same = api.post("/v1/dags", content=SOURCE_AND_SINK.format(concurrency=4))
    assert same.status_code == 200 and same.json()["status"] == "unchanged" and same.json()["version"] == 2


def test_a_deploy_during_a_rebuild_supersedes_it_and_keeps_what_it_built(
    stack: Stack, reader: Reader, tmp_path: Path
) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    gate = tmp_path / "gate"
    scaled_by_3 = {"factor": 3, "scaled_extra": f', gate: "{gate}"'}
    stack.deploy(lifecycle_dag(tmp_path, **scaled_by_3))  # type: ignore[arg-type]
    v2 = version_jobs(stack, 2)
    wait_for(lambda: len(job_tasks(stack, v2["scaled"]["job_id"])) == 4, 30, "the rebuild of scaled")
    with stack.client() as api:
        again = api.post("/v1/dags", content=lifecycle_dag(tmp_path, **scaled_by_3))  # type: ignore[arg-type]
    assert again.status_code == 200 and again.json() | {"version": 2, "status": "unchanged"} == again.json()

    third = stack.deploy(lifecycle_dag(tmp_path, total_query="select n, value * 10 as value from input", **scaled_by_3))  # type: ignore[arg-type]
    assert third["version"] == 3 and third["status"] == "rebuilding" and third["superseded_version"] == 2
    assert third["changed_jobs"] == ["scaled", "total"] and third["rebuild_jobs"] == ["scaled", "total"]
    v3 = version_jobs(stack, 3)
    assert v3["scaled"] == v2["scaled"]  # the superseded rebuild's scaled builds exactly this: kept, with its tasks
    assert v3["total"]["job_id"] != v2["total"]["job_id"]
    assert [(v["version"], v["status"]) for v in dag_status(stack)["versions"]] == [
        (3, "rebuilding"),
        (2, "abandoned"),
        (1, "active"),
    ]
    gate.write_text("open")
    wait_active(stack, 3)
    assert reader.query("select sum(value) as v from scaled") == [{"v": 18}]
    assert reader.query("select sum(value) as v from total") == [{"v": 180}]
    assert len(job_tasks(stack, v2["scaled"]["job_id"])) == 4  # built once


def test_rematerialize_none_continues_the_data_instead_of_rebuilding(
    stack: Stack, reader: Reader, tmp_path: Path
) -> None:
    stop, pause = tmp_path / "stop", tmp_path / "pause"
    pause.write_text("")
    live = f'stop: "{stop}", pause: "{pause}", interval_s: 0.05, count: 8'
    stack.deploy(lifecycle_dag(tmp_path, source=live))
    stack.start_worker()
    pause.unlink()
    wait_for(lambda: len(reader.rows("total")) == 8 and len(reader.rows("mirror")) == 8, 60, "version 1's data")
    pause.write_text("")
    with stack.client() as api:  # more numbers come once the source runs again (restarted, it counts on to 12)
        continued = api.post(
            "/v1/dags",
            params={"rematerialize": "none"},
            content=lifecycle_dag(tmp_path, source=live.replace("count: 8", "count: 12"), factor=3),
        )
    assert continued.status_code == 201, continued.text
    body = continued.json()
    assert (body["version"], body["status"], body["rematerialize"]) == (2, "active", False)
    # the source changed, so everything downstream of it gets a new job row, continuing the old one's data
    assert body["rebuild_jobs"] == [] and body["continued_jobs"] == ["mirror", "numbers", "scaled", "total"]
    v1, v2 = version_jobs(stack, 1), version_jobs(stack, 2)
    locations = stack.sql(
        """SELECT dv.dataset_version::text AS v, dv.storage_location, dv.continues_version::text AS c
           FROM dataset_versions dv"""
    )
    by_version = {row["v"]: row for row in locations}
    for job in ("numbers", "scaled", "total", "mirror"):
        assert v2[job]["job_id"] != v1[job]["job_id"] and not v2[job]["rebuilds"]
        new, old = by_version[v2[job]["outputs"][0][1]], by_version[v1[job]["outputs"][0][1]]
        assert new["c"] == old["v"] and new["storage_location"] == old["storage_location"]
    # at once, and with the data kept: the first eight numbers are as version 1 wrote them
    assert dag_status(stack)["active_version"] == 2
    assert [r["value"] for r in reader.rows("scaled")] == [2 * n for n in range(8)]
    pause.unlink()
    wait_for(lambda: len(reader.rows("total")) == 12 and len(reader.rows("mirror")) == 12, 60, "version 2 to continue")
    rows = reader.rows("scaled")
    assert [r["n"] for r in rows] == list(range(12))
    # the restarted source wrote its first eight scopes again and version 2 processed them with its code
    assert all(r["value"] == 3 * r["n"] for r in rows)
