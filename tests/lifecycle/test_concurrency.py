"""Lifecycle changes race: deploys and rollbacks of one DAG that overlap (both read the DAG before either
commits) end with exactly one winner; the others get 409 saying why.

To make the overlap certain rather than likely, the test holds the DAG's row locked while the requests arrive:
each reads the DAG, then blocks at its compare-and-swap on that row; the test checks they are all waiting there,
then lets them go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.lifecycle.conftest import dag_status, lifecycle_dag
from tests.support.stack import Stack, running_stack, wait_for


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A dispatcher without the leader's loops: only the racing requests may wait on the DAG's row (the rebuild
    loop's cutover check locks it too, and would be counted among the waiters)."""
    with running_stack(database_url, tmp_path / "stack") as running:
        running.start_dispatcher({"TRACE_DISPATCHER_LOOPS": "false"})
        yield running


@contextmanager
def dag_row_held(stack: Stack, dag: str = "lc") -> Iterator[Callable[[], int]]:
    """Hold the DAG's row locked until the block ends; yields a count of sessions waiting for a lock."""
    with psycopg.connect(stack.database_url) as holder, psycopg.connect(stack.database_url, autocommit=True) as probe:
        holder.execute("SELECT dag_id FROM dags WHERE dag_name = %s FOR UPDATE", (dag,))

        def waiting() -> int:
            row = probe.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock'"""
            ).fetchone()
            return int(row[0]) if row else 0

        yield waiting
        holder.commit()


def race(stack: Stack, calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[httpx.Response]:
    """Send `calls` at once, each on its own connection, while the DAG row is held; their answers, in order."""

    def send(call: Callable[[httpx.Client], httpx.Response]) -> httpx.Response:
        with stack.client() as api:
            return call(api)

    with ThreadPoolExecutor(len(calls)) as pool:
        with dag_row_held(stack) as waiting:
            futures = [pool.submit(send, call) for call in calls]
            wait_for(lambda: waiting() == len(calls), 30, f"{len(calls)} requests to wait on the DAG row")
        return [future.result(timeout=60) for future in futures]


# No worker runs in these tests, so a rebuild of the source never catches up: it stays a rebuild.
REBUILT_SOURCE = "count: 5"


def test_concurrent_deploys_exactly_one_wins(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    factors = [3, 4, 5, 6]
    answers = race(
        stack,
        [
            lambda api, f=f: api.post(  # type: ignore[misc]
                "/v1/dags", content=lifecycle_dag(tmp_path, factor=f, source=REBUILT_SOURCE)
            )
            for f in factors
        ],
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
    for lost in (a for a in answers if a.status_code == 409):
        assert "changed while this deploy was prepared" in lost.json()["detail"]
    [won] = [a.json() for a in answers if a.status_code == 201]
    assert won["version"] == 2 and won["status"] == "rebuilding"
    status = dag_status(stack)
    assert [(v["version"], v["status"]) for v in status["versions"]] == [(2, "rebuilding"), (1, "active")]
    [factor] = stack.sql(
        "SELECT config->'jobs'->'scaled'->'config'->>'factor' AS f FROM dag_versions WHERE version = 2"
    )
    assert int(factor["f"]) == factors[answers.index(next(a for a in answers if a.status_code == 201))]


def test_a_deploy_and_a_rollback_race_one_wins(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    assert stack.deploy(lifecycle_dag(tmp_path, source=REBUILT_SOURCE))["status"] == "rebuilding"
    rollback, deploy = race(
        stack,
        [
            lambda api: api.post("/v1/dags/lc/rollback"),
            lambda api: api.post("/v1/dags", content=lifecycle_dag(tmp_path, factor=4, source=REBUILT_SOURCE)),
        ],
    )
    # the winner answers as it would alone: a rollback 200, a deploy 201 (the loser 409)
    assert (rollback.status_code, deploy.status_code) in {(200, 409), (409, 201)}, [rollback.text, deploy.text]
    versions = [(v["version"], v["status"]) for v in dag_status(stack)["versions"]]
    if rollback.status_code == 200:
        assert "changed while this deploy was prepared" in deploy.json()["detail"]
        assert versions == [(2, "rolled_back"), (1, "active")]
    else:
        assert "changed while this rollback was prepared" in rollback.json()["detail"]
        assert deploy.json()["superseded_version"] == 2
        assert versions == [(3, "rebuilding"), (2, "abandoned"), (1, "active")]
