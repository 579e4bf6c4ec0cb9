"""range_aggregator and range_splitter in running DAGs: the same blocks give the same manifests in two DAGs,
the splitter gives the blocks back, and an aggregator that loses its compare-and-swap to another writer reads
the state again and emits nothing twice."""

from __future__ import annotations

from typing import Any

from tests.dispatcher.test_worker_contract import call, fetch, take_dispatched
from tests.support.stack import Stack, wait_for
from trace_core.contracts.events import EmittedEvent, EventKind
from trace_core.contracts.tasks import OperatorTask
from worker.operators import OperatorContext, StateConflictError, StoredState, range_aggregator

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
    assert all(s["revision"] == 20 for s in states)  # one save per block counted (2..21), none lost


SOURCE = """
dag: raced
jobs:
  blocks:
    activation: source
    operator: noop
  ranges:
    operator: range_aggregator
    inputs: [{from: {job: blocks}}]
    config: {range_size: 4}
"""


def test_an_aggregator_that_loses_the_swap_recomputes_and_emits_nothing_twice(stack: Stack) -> None:
    """The aggregator runs in process here, its state calls made over the real internal API: between its read
    and its save, another writer applies the same block (and emits its manifest)."""
    stack.deploy(SOURCE)
    with stack.internal() as internal:
        # the test is the source's worker: block 3 arrives after blocks 0..2 were counted
        source = fetch(internal, take_dispatched(stack, internal))
        block = {"scope": {"cursor": "0:h3", "range": {"start": 3, "end": 3}}}
        assert internal.post("/internal/events", json=call(source, events=[block])).status_code == 200
        payload = fetch(internal, take_dispatched(stack, internal))
        assert payload["job"]["operator"] == "range_aggregator"
        counted = {"next_block": 3, "first_range": 0, "dirty": []}
        seeded = internal.put("/internal/operator-state", json=call(payload, expected_revision=0, state=counted))
        assert seeded.json()["revision"] == 1

        manifest = {"kind": "data", "scope": {"partition_key": "0_3", "range": {"start": 0, "end": 3}}}
        reads: list[dict[str, Any]] = []

        def load() -> StoredState:
            answer = internal.post("/internal/operator-state/read", json=call(payload)).json()
            reads.append(answer)
            if len(reads) == 1:  # the other writer wins the race for block 3
                applied = {**answer["state"], "next_block": 4}
                other = call(payload, expected_revision=answer["revision"], state=applied, events=[manifest])
                assert internal.put("/internal/operator-state", json=other).status_code == 200
            return StoredState(answer["state"], answer["revision"])

        def save(state: dict[str, Any], revision: int, events: list[EmittedEvent]) -> int:
            body = call(
                payload, expected_revision=revision, state=state, events=[e.model_dump(mode="json") for e in events]
            )
            answer = internal.put("/internal/operator-state", json=body)
            if answer.status_code == 412:
                raise StateConflictError(answer.json()["detail"])
            assert answer.status_code == 200, answer.text
            return int(answer.json()["revision"])

        def no_data(*_: object) -> Any:
            raise AssertionError("range_aggregator only emits through its state saves")

        task = OperatorTask.model_validate({k: v for k, v in payload.items() if k in OperatorTask.model_fields})
        ctx = OperatorContext(
            task,
            emit_callback=no_data,
            write_callback=no_data,
            input_callback=no_data,
            query_inputs_callback=no_data,
            query_result_callback=no_data,
            load_state_callback=load,
            save_state_callback=save,
        )
        assert range_aggregator.run(ctx) is None

    assert [r["revision"] for r in reads] == [1, 2]  # lost at revision 1, read again
    wait_for(lambda: stack.sql("SELECT count(*) AS n FROM events WHERE routed_at IS NULL")[0]["n"] == 0, 10)
    manifests = stack.sql("SELECT kind, partition_key FROM events WHERE partition_key IS NOT NULL")
    assert manifests == [{"kind": EventKind.DATA.value, "partition_key": "0_3"}]  # once, from the winner
    [state] = stack.sql("SELECT state, revision FROM operator_state")
    assert state == {"state": {"next_block": 4, "first_range": 0, "dirty": []}, "revision": 2}
