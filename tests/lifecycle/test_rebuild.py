"""A redeploy that changes a downstream job: only it and its descendants get new dataset versions, they rebuild
from the start of their input beside the serving version, and one cutover switches readers over."""

from __future__ import annotations

from pathlib import Path

from tests.lifecycle.conftest import Reader, dag_status, job_tasks, lifecycle_dag, version_jobs, wait_active
from tests.support.stack import Stack, wait_for


def test_rebuild_serves_old_data_until_one_cutover(stack: Stack, reader: Reader, tmp_path: Path) -> None:
    first = stack.deploy(lifecycle_dag(tmp_path))
    assert first["status"] == "active" and first["rebuild_jobs"] == ["mirror", "numbers", "scaled", "total"]
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    assert reader.query("select sum(value) as v from scaled") == [{"v": 12}]
    v1 = version_jobs(stack, 1)

    gate = tmp_path / "gate"
    edited = lifecycle_dag(tmp_path, factor=3, scaled_extra=f', gate: "{gate}"')
    second = stack.deploy(edited)
    assert second["version"] == 2 and second["status"] == "rebuilding"
    assert second["changed_jobs"] == ["scaled"] and second["changes"] == {"scaled": ["config"]}
    assert second["rebuild_jobs"] == ["scaled", "total"]
    v2 = version_jobs(stack, 2)
    for job in ("numbers", "mirror"):  # untouched: the same job row, dataset and dataset version
        assert v2[job] == {**v1[job], "rebuilds": False}
    for job in ("scaled", "total"):  # rebuilt: a new job row and version of the same dataset
        assert v2[job]["job_id"] != v1[job]["job_id"] and v2[job]["rebuilds"]
        assert v2[job]["outputs"][0][0] == v1[job]["outputs"][0][0]
        assert v2[job]["outputs"][0][1] != v1[job]["outputs"][0][1]
    by_job = {d["job"]: d for d in second["datasets"]}
    assert by_job["numbers"]["dataset_version"] == v1["numbers"]["outputs"][0][1]

    # the rebuild has a task for every event its input had; it waits at the gate, and readers see version 1
    wait_for(lambda: len(job_tasks(stack, v2["scaled"]["job_id"])) == 4, 30, "the backfill of scaled")
    status = dag_status(stack)
    assert status["active_version"] == 1 and status["rebuilding_version"] == 2
    progress = {job["job"]: job for job in status["rebuild"]["jobs"]}
    assert set(progress) == {"scaled", "total"}
    assert progress["scaled"]["tasks"]["total"] == 4 and progress["scaled"]["tasks"]["done"] == 0
    assert progress["scaled"]["inputs"][0]["head"] == 3 and status["rebuild"]["caught_up"] is False
    assert reader.query("select sum(value) as v from scaled") == [{"v": 12}]
    assert reader.query("select sum(value) as v from total") == [{"v": 16}]
    before_cutover = reader.pin("select sum(s.value) as v, count(*) as c from scaled s join total t using (n)")

    gate.write_text("open")
    done = wait_active(stack, 2)
    assert done["rebuilding_version"] is None and done["rebuild"] is None
    assert [(v["version"], v["status"]) for v in done["versions"]] == [(2, "active"), (1, "retired")]
    assert reader.query("select sum(value) as v from scaled") == [{"v": 18}]
    assert reader.query("select sum(value) as v from total") == [{"v": 22}]
    assert reader.query("select count(*) as c from mirror") == [{"c": 4}]
    # pinned before the cutover, run after it: consistently version 1 of both datasets
    assert reader.run(before_cutover) == [{"v": 12, "c": 4}]
    assert before_cutover.versions == {"scaled": v1["scaled"]["outputs"][0][1], "total": v1["total"]["outputs"][0][1]}
    assert set(job_tasks(stack, v2["total"]["job_id"])) == {"Completed"}
    # the old rows of the rebuilt jobs did not run again, the untouched ones ran once
    assert job_tasks(stack, v1["scaled"]["job_id"]) == ["Completed"] * 4
    assert job_tasks(stack, v1["mirror"]["job_id"]) == ["Completed"] * 4


OTHER = """
dag: other
jobs:
  source: {activation: source, operator: noop, outputs: [{storage: s3}]}
publish:
  - {job: source, dataset: grand}
"""


def test_a_name_taken_during_the_rebuild_blocks_its_cutover(stack: Stack, reader: Reader, tmp_path: Path) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    gate = tmp_path / "gate"
    renamed = lifecycle_dag(tmp_path, factor=3, scaled_extra=f', gate: "{gate}"').replace(
        "{job: total, dataset: total}", "{job: total, dataset: grand}"
    )
    assert stack.deploy(renamed)["status"] == "rebuilding"  # 'grand' is free now, and published at the cutover
    stack.deploy(OTHER)  # another DAG takes the name meanwhile
    gate.write_text("open")

    def blocked() -> str | None:
        rebuild = dag_status(stack)["rebuild"]
        return rebuild["error"] if rebuild and rebuild["caught_up"] and rebuild["error"] else None

    error = wait_for(blocked, 60, "the cutover to be blocked")
    assert "'grand' is already produced by DAG 'other'" in error
    assert dag_status(stack)["active_version"] == 1
    assert reader.query("select sum(value) as v from total") == [{"v": 16}]
    with stack.client() as api:
        aborted = api.post("/v1/dags/lc/rollback")
    assert aborted.status_code == 200 and aborted.json()["aborted_rebuild"] == 2
