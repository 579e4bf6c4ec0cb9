"""range_aggregator and range_splitter in running DAGs, run inside the dispatcher: the same blocks give the same
manifests in two DAGs, the splitter gives the blocks back, each task keeps one attempt of worker `dispatcher` in the
tasks API; a gap fails its task without a retry, a reorg re-emits an emitted range as an invalidation, a task
waiting for its retry keeps its place, and passes that race apply every task once, in event order. The router applies
the tasks it makes in the same pass, unless the job has queued tasks; a pass that fails leaves nothing of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dispatcher.test_worker_contract import call, fetch, take_dispatched
from tests.lifecycle.conftest import job_tasks, version_jobs, wait_active
from tests.support.loops import Loops
from tests.support.stack import Stack, running_stack

AGGREGATE = """
dag: {dag}
jobs:
  blocks:
    activation: source
    operator: python
    config: {{function: "tests.chain.udfs:numbered_blocks", first: 0, last: 21}}
  ranges:
    operator: range_aggregator
    inputs: [{{from: {{job: blocks}}}}]
    config: {{range_size: 4, start: 2}}
  units:
    operator: range_splitter
    inputs: [{{from: {{job: ranges}}}}]
"""


def events_of(stack: Stack, dag: str, job: str) -> list[dict[str, Any]]:
    return stack.sql(
        """SELECT e.kind, e.partition_key, e.range_start, e.range_end, e.payload FROM events e
           JOIN tasks t ON t.task_id = e.producer_task_id JOIN jobs j ON j.job_id = t.job_id
           JOIN dags d ON d.dag_id = j.dag_id WHERE d.dag_name = %(dag)s AND j.job_name = %(job)s
           ORDER BY e.range_start, e.event_id""",
        {"dag": dag, "job": job},
    )


def test_the_same_blocks_give_the_same_manifests_and_the_splitter_gives_the_blocks_back(stack: Stack) -> None:
    for dag in ("first", "second"):
        stack.deploy(AGGREGATE.format(dag=dag))
    stack.start_worker(concurrency=2)
    stack.wait_jobs_done({"blocks": 2, "ranges": 44, "units": 2 * 5})

    manifests = {dag: events_of(stack, dag, "ranges") for dag in ("first", "second")}
    assert manifests["first"] == manifests["second"]
    assert [(m["kind"], m["partition_key"], m["range_start"], m["range_end"]) for m in manifests["first"]] == [
        ("data", f"{s}_{s + 3}", s, s + 3) for s in range(2, 22, 4)
    ]
    units = events_of(stack, "first", "units")
    assert [(u["range_start"], u["range_end"], u["payload"]) for u in units] == [
        (n, n, {"unit": n}) for n in range(2, 22)
    ]
    states = stack.sql(
        "SELECT s.state, s.revision FROM operator_state s JOIN jobs j USING (job_id) WHERE j.job_name = 'ranges'"
    )
    assert [s["state"] for s in states] == [{"next_block": 22, "first_range": 2, "dirty": []}] * 2
    # one save per pass that moved the state (a pass takes every queued block), never more than one per block
    assert all(1 <= s["revision"] <= 20 for s in states)

    # the dispatcher ran them: one attempt each, by worker `dispatcher`, on the runtime no worker serves
    ran = stack.sql(
        """SELECT j.job_name, t.runtime, t.status, t.attempt_count, a.status AS attempt_status, a.worker_id
           FROM tasks t JOIN jobs j USING (job_id) JOIN task_attempts a USING (task_id)
           WHERE j.job_name IN ('ranges', 'units')"""
    )
    assert len(ran) == 44 + 10
    assert {(r["runtime"], r["status"], r["attempt_count"], r["attempt_status"], r["worker_id"]) for r in ran} == {
        ("dispatcher", "Completed", 1, "Succeeded", "dispatcher")
    }
    with stack.client() as api:
        listed = api.get("/v1/tasks", params={"dag": "first", "job": "units"}).json()
        assert len(listed["tasks"]) == 5 and {t["status"] for t in listed["tasks"]} == {"Completed"}
        detail = api.get(f"/v1/tasks/{listed['tasks'][0]['task_id']}").json()
        assert [(a["attempt_number"], a["status"], a["worker_id"]) for a in detail["attempts"]] == [
            (1, "Succeeded", "dispatcher")
        ]
        assert detail["events_emitted"] == 4


def test_a_redeploy_rebuilds_the_aggregator_from_its_input_and_cuts_over(stack: Stack) -> None:
    """A changed range_size is a new job row with fresh state: the rebuild's tasks (made from the blocks already
    emitted) and its splitter's run in the dispatcher beside the serving version, then one cutover."""
    stack.deploy(AGGREGATE.format(dag="first"))
    stack.start_worker(concurrency=2)
    stack.wait_jobs_done({"blocks": 1, "ranges": 22, "units": 5})
    v1 = version_jobs(stack, 1, dag="first")
    second = stack.deploy(AGGREGATE.format(dag="first").replace("range_size: 4", "range_size: 5"))
    assert second["status"] == "rebuilding" and second["rebuild_jobs"] == ["ranges", "units"]
    wait_active(stack, 2, dag="first")
    v2 = version_jobs(stack, 2, dag="first")
    assert v2["blocks"]["job_id"] == v1["blocks"]["job_id"] and v2["ranges"]["job_id"] != v1["ranges"]["job_id"]
    assert job_tasks(stack, v2["ranges"]["job_id"]) == ["Completed"] * 22
    rebuilt = stack.sql(
        """SELECT e.partition_key FROM events e JOIN tasks t ON t.task_id = e.producer_task_id
           WHERE t.job_id = %(j)s ORDER BY e.event_id""",
        {"j": v2["ranges"]["job_id"]},
    )
    assert [r["partition_key"] for r in rebuilt] == ["2_6", "7_11", "12_16", "17_21"]
    assert job_tasks(stack, v2["units"]["job_id"]) == ["Completed"] * 4
    assert job_tasks(stack, v1["ranges"]["job_id"]) == ["Completed"] * 22  # the old row did not run again


# The test is the source's worker: it emits the blocks itself, and runs the dispatcher's loops one pass at a time.
SOURCE = """
dag: stepped
jobs:
  blocks:
    activation: source
    operator: noop
  ranges:
    operator: range_aggregator
    inputs: [{from: {job: blocks}}]
    config: {range_size: 4}
"""


@pytest.fixture
def stepped(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose dispatcher serves the API but runs no loops: the test runs them in process, one pass at a
    time, on `loops`."""
    with running_stack(database_url, tmp_path / "stack") as running:
        running.start_dispatcher({"TRACE_DISPATCHER_LOOPS": "false"})
        yield running


@pytest.fixture
def loops(stepped: Stack) -> Iterator[Loops]:
    """The loops, run by the test on `stepped`'s database, with the router leaving the tasks to the operator loop."""
    with Loops.running(stepped.database_url, operator_batch=3, router_applies_operators=False) as running:
        yield running


@pytest.fixture
def applying(stepped: Stack) -> Iterator[Loops]:
    """The loops as the leader runs them: the router applies the tasks it makes."""
    with Loops.running(stepped.database_url) as running:
        yield running


def block(n: int, branch: str = "a") -> dict[str, Any]:
    return {"scope": {"cursor": f"{branch}{n}", "range": {"start": n, "end": n}}}


def reorg(start: int, end: int) -> dict[str, Any]:
    return {"kind": "invalidation", "scope": {"cursor": "reorg", "range": {"start": start, "end": end}}}


def manifests(stack: Stack) -> list[tuple[str, str]]:
    rows = stack.sql("SELECT kind, partition_key FROM events WHERE partition_key IS NOT NULL ORDER BY event_id")
    return [(row["kind"], row["partition_key"]) for row in rows]


def ranges_tasks(stack: Stack) -> list[dict[str, Any]]:
    return stack.sql(
        """SELECT t.task_id, t.status, t.attempt_count, t.last_error, e.range_start FROM tasks t
           JOIN jobs j USING (job_id) JOIN events e ON e.event_id = t.input_event_id
           WHERE j.job_name = 'ranges' ORDER BY t.input_event_id"""
    )


def emit(loops: Loops, internal: httpx.Client, source: dict[str, Any], *events: dict[str, Any]) -> None:
    """The source emits `events`; the router makes their tasks."""
    answer = internal.post("/internal/events", json=call(source, events=list(events)))
    assert answer.status_code == 200, answer.text
    loops.route()


def deploy_and_emit(stack: Stack, loops: Loops, dag: str, blocks: int) -> dict[str, Any]:
    """Deploy `dag` and, as its source's worker, emit blocks 0..blocks-1 (routed into tasks); the source's attempt."""
    stack.deploy(dag)
    loops.dispatch()
    with stack.internal() as internal:
        source = fetch(internal, take_dispatched(stack, internal))
        emit(loops, internal, source, *(block(n) for n in range(blocks)))
    return source


def test_a_pass_applies_blocks_in_order_fails_a_gap_and_turns_a_reorg_into_an_invalidation(
    stepped: Stack, loops: Loops
) -> None:
    source = deploy_and_emit(stepped, loops, SOURCE, 5)
    with stepped.internal() as internal:
        assert loops.operators() == 3  # three per pass (operator_batch)
        assert manifests(stepped) == []
        assert loops.operators() == 2
        assert manifests(stepped) == [("data", "0_3")]
        assert loops.operators() == 0

        # a gap: the task fails at once, not retried, and says which block comes next
        emit(loops, internal, source, block(7))
        assert loops.operators() == 1
        gap = ranges_tasks(stepped)[-1]
        assert (gap["status"], gap["attempt_count"]) == ("Failed", 1)
        assert "blocks 7..7 arrived but block 5 comes next" in gap["last_error"]
        [attempt] = stepped.sql(
            "SELECT status, worker_id FROM task_attempts WHERE task_id = %(t)s", {"t": gap["task_id"]}
        )
        assert attempt == {"status": "Failed", "worker_id": "dispatcher"}

        # a reorg of blocks 2..4: range 0_3 was emitted from the old branch, so its next manifest invalidates it
        emit(loops, internal, source, reorg(2, 4))
        emit(loops, internal, source, *(block(n, "b") for n in range(2, 5)))
        assert loops.operators() == 3
        assert loops.operators() == 1
        assert manifests(stepped) == [("data", "0_3"), ("invalidation", "0_3")]
    [state] = stepped.sql("SELECT state FROM operator_state")
    assert state["state"] == {"next_block": 5, "first_range": 0, "dirty": []}
    # a call claiming a dispatcher attempt has no token to show
    with stepped.internal() as internal:
        [done] = stepped.sql("SELECT task_id, attempt_id FROM task_attempts WHERE worker_id = 'dispatcher' LIMIT 1")
        refused = internal.post(
            "/internal/heartbeat",
            json={"task_id": str(done["task_id"]), "attempt_id": str(done["attempt_id"]), "attempt_token": "x" * 43},
        )
        assert refused.status_code == 403


def test_a_task_waiting_for_its_retry_keeps_its_place(stepped: Stack, loops: Loops) -> None:
    deploy_and_emit(stepped, loops, SOURCE, 4)
    first = ranges_tasks(stepped)[0]["task_id"]
    stepped.sql(
        "UPDATE tasks SET not_before = now() + interval '1 hour' WHERE task_id = %(t)s RETURNING task_id", {"t": first}
    )
    assert loops.operators() == 0
    assert {t["status"] for t in ranges_tasks(stepped)} == {"Queued"}
    stepped.sql("UPDATE tasks SET not_before = now() WHERE task_id = %(t)s RETURNING task_id", {"t": first})
    assert loops.operators() == 3
    assert loops.operators() == 1
    assert manifests(stepped) == [("data", "0_3")]


def test_a_config_that_no_longer_parses_fails_the_tasks_of_the_pass(stepped: Stack, loops: Loops) -> None:
    """The deploy refuses a bad config; one changed in the database since fails each task with the problem."""
    deploy_and_emit(stepped, loops, SOURCE, 2)
    stepped.sql("""UPDATE jobs SET config = '{"range_size": 0}' WHERE job_name = 'ranges' RETURNING job_id""")
    assert loops.operators() == 2
    failed = ranges_tasks(stepped)
    assert [t["status"] for t in failed] == ["Failed", "Failed"]
    assert all(t["last_error"].startswith("range_aggregator: config.range_size: ") for t in failed)
    assert stepped.sql("SELECT state FROM operator_state") == []


def test_racing_passes_apply_every_task_once_in_event_order(stepped: Stack, loops: Loops) -> None:
    deploy_and_emit(stepped, loops, SOURCE, 40)
    assert loops.race(4) == 40
    assert manifests(stepped) == [("data", f"{s}_{s + 3}") for s in range(0, 40, 4)]
    attempts = stepped.sql("SELECT task_id, count(*) AS n FROM task_attempts WHERE worker_id = 'dispatcher' GROUP BY 1")
    assert len(attempts) == 40 and {a["n"] for a in attempts} == {1}
    assert {t["status"] for t in ranges_tasks(stepped)} == {"Completed"}


SPLIT = SOURCE.replace("dag: stepped", "dag: split").replace("range_size: 4", "range_size: 3") + (
    "  units:\n    operator: range_splitter\n    inputs: [{from: {job: ranges}}]\n"
)


def test_a_pass_stops_taking_a_jobs_tasks_once_they_emitted_its_events_budget(stepped: Stack) -> None:
    """A splitter's range may be 100,000 units: a pass holds at most TRACE_OPERATOR_PASS_EVENTS events (here 5)."""
    with Loops.running(stepped.database_url, operator_pass_events=5, router_applies_operators=False) as loops:
        deploy_and_emit(stepped, loops, SPLIT, 9)
        assert loops.operators() == 9  # the aggregator's 3 manifests stay under the budget
        loops.route()
        assert [loops.operators() for _ in range(3)] == [2, 1, 0]  # 3 units, then 6 >= 5: the third waits
    units = stepped.sql(
        """SELECT e.range_start FROM events e JOIN tasks t ON t.task_id = e.producer_task_id
           JOIN jobs j USING (job_id) WHERE j.job_name = 'units' ORDER BY e.event_id"""
    )
    assert [u["range_start"] for u in units] == list(range(9))


def attempts_of(stack: Stack, job: str) -> list[dict[str, Any]]:
    return stack.sql(
        """SELECT a.attempt_number, a.status, a.worker_id FROM task_attempts a JOIN tasks t USING (task_id)
           JOIN jobs j USING (job_id) WHERE j.job_name = %(job)s ORDER BY t.input_event_id""",
        {"job": job},
    )


def test_the_router_applies_the_tasks_it_makes_in_order_with_one_attempt_each(stepped: Stack, applying: Loops) -> None:
    source = deploy_and_emit(stepped, applying, SOURCE, 5)
    tasks = ranges_tasks(stepped)
    assert [(t["status"], t["attempt_count"], t["range_start"]) for t in tasks] == [
        ("Completed", 1, n) for n in range(5)
    ]
    assert (
        attempts_of(stepped, "ranges") == [{"attempt_number": 1, "status": "Succeeded", "worker_id": "dispatcher"}] * 5
    )
    assert manifests(stepped) == [("data", "0_3")]
    [manifest] = stepped.sql("SELECT producer_task_id, producer_attempt_id FROM events WHERE partition_key = '0_3'")
    [last] = stepped.sql(
        "SELECT task_id, attempt_id FROM task_attempts WHERE task_id = %(t)s", {"t": tasks[3]["task_id"]}
    )
    assert (manifest["producer_task_id"], manifest["producer_attempt_id"]) == (last["task_id"], last["attempt_id"])
    lineage = stepped.sql(
        """SELECT count(*) AS n FROM task_inputs i JOIN tasks t USING (task_id)
           WHERE t.input_event_id = i.event_id AND t.task_id = ANY(%(t)s)""",
        {"t": [t["task_id"] for t in tasks]},
    )
    assert lineage == [{"n": 5}]
    [state] = stepped.sql("SELECT state, updated_by_task_id FROM operator_state")
    assert state == {
        "state": {"next_block": 5, "first_range": 0, "dirty": []},
        "updated_by_task_id": tasks[4]["task_id"],
    }
    assert applying.operators() == 0  # nothing left for the loop

    with stepped.internal() as internal:
        emit(applying, internal, source, block(7))  # a gap: failed at once, not retried
        gap = ranges_tasks(stepped)[-1]
        assert (gap["status"], gap["attempt_count"]) == ("Failed", 1)
        assert "blocks 7..7 arrived but block 5 comes next" in gap["last_error"]
        emit(applying, internal, source, reorg(2, 4), *(block(n, "b") for n in range(2, 5)))
    assert manifests(stepped) == [("data", "0_3"), ("invalidation", "0_3")]
    [state] = stepped.sql("SELECT state FROM operator_state")
    assert state["state"] == {"next_block": 5, "first_range": 0, "dirty": []}
    # (the same state as before the reorg: not saved again)


def test_a_job_with_a_queued_task_is_not_overtaken(stepped: Stack, loops: Loops, applying: Loops) -> None:
    """Tasks left to the loop (here by a router that does not apply them), the first waiting for its retry time: the
    applying router queues the job's new tasks behind them, and the loop applies all of them in event order."""
    source = deploy_and_emit(stepped, loops, SOURCE, 4)
    first = ranges_tasks(stepped)[0]["task_id"]
    stepped.sql(
        "UPDATE tasks SET not_before = now() + interval '1 hour' WHERE task_id = %(t)s RETURNING task_id", {"t": first}
    )
    with stepped.internal() as internal:
        emit(applying, internal, source, *(block(n) for n in range(4, 8)))
    assert [t["status"] for t in ranges_tasks(stepped)] == ["Queued"] * 8
    assert applying.operators() == 0
    stepped.sql("UPDATE tasks SET not_before = now() WHERE task_id = %(t)s RETURNING task_id", {"t": first})
    assert applying.operators() == 8
    assert manifests(stepped) == [("data", "0_3"), ("data", "4_7")]
    assert [t["status"] for t in ranges_tasks(stepped)] == ["Completed"] * 8
    # the queue drained: the router applies the next block itself
    with stepped.internal() as internal:
        emit(applying, internal, source, block(8))
    assert ranges_tasks(stepped)[-1]["status"] == "Completed"


def test_a_config_that_no_longer_parses_fails_the_tasks_the_router_applies(stepped: Stack, applying: Loops) -> None:
    stepped.deploy(SOURCE)
    stepped.sql("""UPDATE jobs SET config = '{"range_size": 0}' WHERE job_name = 'ranges' RETURNING job_id""")
    applying.dispatch()
    with stepped.internal() as internal:
        source = fetch(internal, take_dispatched(stepped, internal))
        emit(applying, internal, source, block(0), block(1))
    failed = ranges_tasks(stepped)
    assert [(t["status"], t["attempt_count"]) for t in failed] == [("Failed", 1)] * 2
    assert all(t["last_error"].startswith("range_aggregator: config.range_size: ") for t in failed)
    assert attempts_of(stepped, "ranges") == [{"attempt_number": 1, "status": "Failed", "worker_id": "dispatcher"}] * 2
    assert stepped.sql("SELECT state FROM operator_state") == []


def test_a_router_pass_that_fails_while_applying_leaves_nothing_and_the_next_one_applies_it(
    stepped: Stack, applying: Loops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the tasks' insert and the commit (here the events' insert fails): no task, attempt, event or
    state of the pass is left, its events stay unrouted, and the next pass applies each task once."""
    from dispatcher.repositories import tasks as tasks_repo

    stepped.deploy(SOURCE)
    applying.dispatch()
    insert_events = tasks_repo.insert_events

    async def broken(*args: Any) -> Any:
        raise RuntimeError("the dispatcher died here")

    monkeypatch.setattr(tasks_repo, "insert_events", broken)
    with stepped.internal() as internal:
        source = fetch(internal, take_dispatched(stepped, internal))
        answer = internal.post("/internal/events", json=call(source, events=[block(n) for n in range(6)]))
        assert answer.status_code == 200, answer.text
    with pytest.raises(RuntimeError, match="died here"):
        applying.route()
    assert ranges_tasks(stepped) == []
    assert stepped.sql("SELECT count(*) AS n FROM task_attempts WHERE worker_id = 'dispatcher'") == [{"n": 0}]
    assert stepped.sql("SELECT state FROM operator_state") == []
    assert manifests(stepped) == []
    assert stepped.sql("SELECT count(*) AS n FROM unrouted_events") == [{"n": 6}]

    monkeypatch.setattr(tasks_repo, "insert_events", insert_events)
    assert applying.route() == 6
    assert [(t["status"], t["attempt_count"]) for t in ranges_tasks(stepped)] == [("Completed", 1)] * 6
    assert manifests(stepped) == [("data", "0_3")]
    assert len(attempts_of(stepped, "ranges")) == 6


def test_the_router_queues_a_jobs_tasks_past_its_events_budget(stepped: Stack) -> None:
    """As a pass of the loop, a router pass stops applying a job's tasks once they emitted
    TRACE_OPERATOR_PASS_EVENTS (here 5) events; the rest are queued, and the loop applies them."""
    with Loops.running(stepped.database_url, operator_pass_events=5) as loops:
        deploy_and_emit(stepped, loops, SPLIT, 9)  # the aggregator's 3 manifests: under the budget
        loops.route()  # the splitter: 3 units, then 6 >= 5, so the third manifest's task waits
        units = stepped.task_statuses("units")
        assert sorted(units) == ["Completed", "Completed", "Queued"]
        assert loops.operators() == 1
    units_events = stepped.sql(
        """SELECT e.range_start FROM events e JOIN tasks t ON t.task_id = e.producer_task_id
           JOIN jobs j USING (job_id) WHERE j.job_name = 'units' ORDER BY e.event_id"""
    )
    assert [u["range_start"] for u in units_events] == list(range(9))
