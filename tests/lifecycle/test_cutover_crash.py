"""A dispatcher killed (SIGKILL) in the middle of a cutover leaves the old version and pointer set, never a mix;
the next leader cuts over.

To be sure the kill lands inside the cutover transaction, the test holds the row of the version being retired:
the cutover swaps the DAG's pointers, then blocks on that row. The test checks that the swap is in the open
transaction (the DAG row's xmax is that backend's transaction id), kills the dispatcher, and lets the blocked
statement finish: Postgres then finds the client gone and rolls the transaction back."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import psycopg

from tests.lifecycle.conftest import Reader, lifecycle_dag, version_jobs, wait_active
from tests.support.stack import Stack, wait_for

MAPPING = """SELECT dataset_uuid::text, dataset_version::text FROM current_dataset_versions
             WHERE dag_name = 'lc' ORDER BY 1"""


class Watcher(threading.Thread):
    """Reads what readers see, as often as it can, until stopped; keeps every distinct mapping."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.seen: set[tuple[tuple[str, str], ...]] = set()
        self.reads = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stopping.is_set():
                self.seen.add(tuple((row[0], row[1]) for row in conn.execute(MAPPING).fetchall()))
                self.reads += 1


def test_a_dispatcher_killed_mid_cutover_leaves_the_old_pointer_set(
    stack: Stack, reader: Reader, tmp_path: Path
) -> None:
    stack.deploy(lifecycle_dag(tmp_path))
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    gate = tmp_path / "gate"
    stack.deploy(lifecycle_dag(tmp_path, factor=3, scaled_extra=f', gate: "{gate}"'))
    old = tuple(sorted(o for job in version_jobs(stack, 1).values() for o in job["outputs"].values()))
    new = tuple(sorted(o for job in version_jobs(stack, 2).values() for o in job["outputs"].values()))
    assert old != new
    watcher = Watcher(stack.database_url)
    watcher.start()

    with psycopg.connect(stack.database_url) as holder, psycopg.connect(stack.database_url, autocommit=True) as probe:
        holder.execute("SELECT 1 FROM dag_versions WHERE version = 1 FOR UPDATE")
        gate.write_text("open")

        def cutover_blocked() -> tuple[int, str] | None:
            row = probe.execute(
                """SELECT a.pid, a.backend_xid::text, a.query FROM pg_stat_activity a
                   WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'"""
            ).fetchone()
            return (int(row[0]), str(row[1])) if row and "UPDATE dag_versions" in row[2] else None

        pid, xid = wait_for(cutover_blocked, 60, "the cutover to block inside its transaction")
        [dag_row] = probe.execute("SELECT xmax::text, active_version_id FROM dags WHERE dag_name = 'lc'").fetchall()
        assert dag_row[0] == xid, "the swap of the DAG's pointers is in the blocked transaction"
        assert reader.query("select sum(value) as v from scaled") == [{"v": 12}]

        stack.processes[0].kill(signal.SIGKILL)  # the dispatcher, mid-transaction
        holder.commit()
        wait_for(
            lambda: not probe.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(),
            30,
            "Postgres to end the killed dispatcher's session",
        )
        [after] = probe.execute(
            "SELECT v.version, d.rebuilding_version_id IS NOT NULL FROM dags d "
            "JOIN dag_versions v ON v.dag_version_id = d.active_version_id"
        ).fetchall()
        assert after == (1, True)  # rolled back: version 1 serves, version 2 still rebuilds
    assert reader.query("select sum(value) as v from scaled") == [{"v": 12}]

    stack.start_dispatcher()  # the next leader finds the rebuild caught up and cuts over
    stack.dispatcher_url = stack.processes[-1].url
    wait_active(stack, 2)
    assert reader.query("select sum(value) as v from scaled") == [{"v": 18}]
    watcher.stopping.set()
    watcher.join(10)
    assert watcher.reads > 10 and watcher.seen == {old, new}
