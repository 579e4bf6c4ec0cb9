"""block_follower against a real devchain, run by real dispatcher and worker processes: one event per
confirmed block, resumption after SIGKILL with no gap and no duplicate, reorgs below and above
`confirmations`, a node that is down or answers garbage, cancel, and bad configs."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq

from tests.chain.support import assert_in_order_without_gaps, blocks_seen, canonical, emitted, follower_dag
from tests.support.devchain import Devchain
from tests.support.stack import Stack, free_port, wait_for


def source_task(stack: Stack) -> dict[str, object]:
    [task] = stack.sql(
        """SELECT t.task_id::text AS task_id, t.status, t.attempt_count, t.last_error FROM tasks t
           JOIN jobs j USING (job_id) WHERE j.job_name = 'blocks'"""
    )
    return task


def children_of(pid: int) -> list[int]:
    """Pids of the processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_emitted_through(stack: Stack, block: int, timeout_s: float = 60) -> None:
    def reached() -> bool:
        events = emitted(stack)
        return bool(events) and max(e["end"] for e in events if e["kind"] == "data") >= block

    wait_for(reached, timeout_s, f"block {block} to be emitted")


def test_follows_the_head_after_confirmations(stack: Stack, devchain: Devchain) -> None:
    stack.deploy(follower_dag(devchain.url, confirmations=3))
    stack.start_worker(concurrency=1)
    wait_emitted_through(stack, 17)  # head 20, three confirmations
    devchain.mine(5)
    wait_emitted_through(stack, 22)
    events = emitted(stack)
    assert_in_order_without_gaps(events)
    assert max(e["end"] for e in events) == 22  # never past head - confirmations
    assert blocks_seen(events) == canonical(devchain, 22)
    first = events[1]["payload"]
    assert set(first) == {"number", "hash", "parent_hash", "timestamp"}
    assert first["parent_hash"] == events[0]["payload"]["hash"] and first["timestamp"] == 1_700_000_012
    assert events[0]["cursor"] == f"0:{events[0]['payload']['hash']}"
    [state] = stack.sql("SELECT state, revision FROM operator_state")
    assert state["state"]["next_block"] == 23 and state["state"]["epoch"] == 0
    assert state["state"]["recent"][-1] == [22, events[-1]["payload"]["hash"]]


def test_a_sigkilled_worker_resumes_from_the_cursor_without_gaps_or_duplicates(
    stack: Stack, devchain: Devchain
) -> None:
    stack.deploy(follower_dag(devchain.url, confirmations=1, batch_blocks=3))
    worker = stack.start_worker(concurrency=1)
    devchain.mining(30)  # a block every 30 ms while following
    wait_emitted_through(stack, 40)
    worker.kill()  # SIGKILL mid-run: its attempt's lease expires and the reaper retries it
    worker = stack.start_worker(concurrency=1)
    wait_for(lambda: source_task(stack)["attempt_count"] == 2, 30, "a second attempt")
    head = devchain.head()["number"]
    wait_emitted_through(stack, head + 20)

    # killed again while idle at the head: its operator children (in their own session) die with it, rather
    # than polling the node on with no one to report to
    devchain.mining(None)
    wait_emitted_through(stack, devchain.head()["number"] - 1)
    children = children_of(worker.popen.pid)
    assert children
    worker.kill()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 10, "the orphaned children to exit")
    devchain.mining(30)
    stack.start_worker(concurrency=1)
    wait_for(lambda: source_task(stack)["attempt_count"] == 3, 30, "a third attempt")
    wait_emitted_through(stack, devchain.head()["number"] + 10)
    devchain.mining(None)
    final = devchain.head()["number"]
    wait_emitted_through(stack, final - 1)

    events = emitted(stack)
    assert all(e["kind"] == "data" for e in events)
    assert_in_order_without_gaps(events)  # each block once, in order, across both attempts
    assert [e["start"] for e in events] == list(range(final))
    assert blocks_seen(events) == canonical(devchain, final - 1)
    assert source_task(stack)["status"] == "Running"


def test_a_reorg_within_confirmations_is_never_seen(stack: Stack, devchain: Devchain) -> None:
    stack.deploy(follower_dag(devchain.url, confirmations=4))
    stack.start_worker(concurrency=1)
    wait_emitted_through(stack, 16)
    devchain.reorg(3)  # replaces 18..20 (not emitted yet) with 18..21
    devchain.mine(4)
    wait_emitted_through(stack, 21)
    events = emitted(stack)
    assert all(e["kind"] == "data" for e in events)
    assert_in_order_without_gaps(events)
    assert blocks_seen(events) == canonical(devchain, 21)


def test_a_reorg_deeper_than_confirmations_is_invalidated_and_replaced(stack: Stack, devchain: Devchain) -> None:
    stack.deploy(follower_dag(devchain.url, confirmations=2))
    stack.start_worker(concurrency=1)
    wait_emitted_through(stack, 18)
    old = canonical(devchain, 18)
    replaced = devchain.reorg(6)["replaced"]  # 15..20: blocks 15..18 were emitted
    assert replaced == {"start": 15, "end": 20}
    wait_for(lambda: any(e["kind"] == "invalidation" for e in emitted(stack)), 30, "the invalidation")
    wait_emitted_through(stack, 19)

    events = emitted(stack)
    [invalidation] = [e for e in events if e["kind"] == "invalidation"]
    assert (invalidation["start"], invalidation["end"], invalidation["cursor"]) == (15, 18, "reorg:1")
    assert invalidation["payload"] == {"fork_block": 14, "depth": 4, "replaced_head": old[18]}
    assert_in_order_without_gaps(events)
    after = events[events.index(invalidation) + 1 :]
    assert [e["start"] for e in after] == [15, 16, 17, 18, 19]
    assert all(e["cursor"].startswith("1:") for e in after)  # the new epoch: not deduplicated against the old
    assert blocks_seen(events) == canonical(devchain, 19)
    assert all(blocks_seen(events)[n] != old[n] for n in range(15, 19))

    # a second reorg, deeper than the first fork point
    devchain.reorg(10)
    devchain.mine(2)
    head = devchain.head()["number"]
    wait_for(
        lambda: [e["cursor"] for e in emitted(stack) if e["kind"] == "invalidation"] == ["reorg:1", "reorg:2"],
        30,
        "the second invalidation",
    )
    wait_emitted_through(stack, head - 2)
    events = emitted(stack)
    assert_in_order_without_gaps(events)
    assert blocks_seen(events) == canonical(devchain, head - 2)


def test_a_long_running_follower_heartbeats_and_can_be_canceled(stack: Stack, devchain: Devchain) -> None:
    stack.deploy(follower_dag(devchain.url))
    stack.start_worker(concurrency=1)
    wait_emitted_through(stack, 18)
    # leases are 2 s in the test stack: a follower running three times that long is kept alive by heartbeats
    task = source_task(stack)
    time.sleep(6)
    assert source_task(stack)["attempt_count"] == 1 and source_task(stack)["status"] == "Running"
    with stack.client() as api:
        assert api.post(f"/v1/tasks/{task['task_id']}/cancel").status_code == 200
    wait_for(lambda: source_task(stack)["status"] == "Canceled", 30, "the run to be canceled")


class _Garbage(BaseHTTPRequestHandler):
    answers: list[tuple[int, bytes]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def garbage_node(*answers: tuple[int, bytes]) -> Iterator[str]:
    """A loopback HTTP server answering `answers` in turn (the last one from then on)."""
    handler = type("Garbage", (_Garbage,), {"answers": list(answers)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/key/SECRET-KEY"
    finally:
        server.shutdown()
        server.server_close()


def assert_failed_after_retries(stack: Stack, message: str) -> None:
    wait_for(lambda: source_task(stack)["status"] == "Failed", 60, "the run to fail")
    task = source_task(stack)
    assert task["attempt_count"] == 3 and message in str(task["last_error"]), task
    assert "SECRET-KEY" not in str(task["last_error"])
    attempts = stack.sql("SELECT started_at, finished_at, error FROM task_attempts ORDER BY attempt_number")
    assert all(message in a["error"] for a in attempts)
    # retried with backoff: each attempt started after the previous one failed
    assert all(b["started_at"] > a["finished_at"] for a, b in itertools.pairwise(attempts))
    # nothing half-written: no event, no state
    assert emitted(stack) == [] and stack.sql("SELECT * FROM operator_state") == []


def test_a_node_that_is_down_fails_the_run_after_retries(stack: Stack) -> None:
    stack.deploy(follower_dag(f"http://127.0.0.1:{free_port()}/key/SECRET-KEY", max_attempts=3, rpc_retries=1))
    stack.start_worker(concurrency=1)
    assert_failed_after_retries(stack, "eth_blockNumber: cannot reach the node")


def test_a_node_answering_garbage_fails_the_run_after_retries(stack: Stack) -> None:
    with garbage_node((200, b"<html>502 Bad Gateway</html>")) as url:
        stack.deploy(follower_dag(url, max_attempts=3, rpc_retries=0))
        stack.start_worker(concurrency=1)
        assert_failed_after_retries(stack, "eth_blockNumber answered something that is not JSON: '<html>502")


def test_a_node_answering_bad_blocks_fails_the_run_after_retries(stack: Stack) -> None:
    head = json.dumps({"jsonrpc": "2.0", "id": 0, "result": "0x10"}).encode()
    block = {"number": "0x0", "hash": "0x1234", "parentHash": "0x" + "0" * 64, "timestamp": "0x1"}
    bad_block = json.dumps([{"jsonrpc": "2.0", "id": i, "result": block} for i in range(3)]).encode()
    with garbage_node(
        (200, head), (200, bad_block), (200, head), (200, bad_block), (200, head), (200, bad_block)
    ) as url:
        stack.deploy(follower_dag(url, max_attempts=3, rpc_retries=0, batch_blocks=3))
        stack.start_worker(concurrency=1)
        assert_failed_after_retries(stack, "eth_getBlockByNumber(0x0) answered a block whose hash is")


def test_bad_follower_configs_are_refused_at_deploy(stack: Stack) -> None:
    good = follower_dag("http://127.0.0.1:8545")
    cases = [
        (good.replace('rpc_url: "http://127.0.0.1:8545", ', ""), "jobs.blocks.config.rpc_url", "set config.rpc_url"),
        (
            good.replace("confirmations: 2", "confirmations: -1"),
            "jobs.blocks.config.confirmations",
            "greater than or equal to 0",
        ),
        (
            good.replace("poll_interval_s: 0.05", "poll_interval_s: nope"),
            "jobs.blocks.config.poll_interval_s",
            "number",
        ),
        (
            good + "  ranges:\n    operator: range_aggregator\n    inputs: [{from: {job: blocks}}]\n"
            "    config: {range_size: 0}\n",
            "jobs.ranges.config.range_size",
            "greater than or equal to 1",
        ),
    ]
    with stack.client() as api:
        for text, field, message in cases:
            answer = api.post("/v1/dags", content=text)
            assert answer.status_code == 422, answer.text
            problems = answer.json()["extra"]
            assert any(p["field"] == field and message in p["message"] for p in problems), problems


def test_stored_outputs_hold_one_row_per_block_and_the_new_branch_replaces_the_old(
    stack: Stack, devchain: Devchain
) -> None:
    text = follower_dag(devchain.url).replace(
        "    max_attempts:",
        "    outputs: [{storage: postgres, unique_key: [number]}, {storage: s3}]\n    max_attempts:",
    )
    stack.deploy(
        text
        + "publish:\n  - {job: blocks, output: 0, dataset: heads}\n  - {job: blocks, output: 1, dataset: heads_files}\n"
    )
    stack.start_worker(concurrency=1)
    wait_emitted_through(stack, 18)
    devchain.reorg(6)  # 15..20 replaced: 15..18 were written
    head = devchain.head()["number"]
    wait_for(lambda: any(e["kind"] == "invalidation" for e in emitted(stack)), 30, "the invalidation")
    wait_emitted_through(stack, head - 2)

    [table] = stack.sql("SELECT storage_location FROM current_dataset_versions WHERE dataset_name = 'heads'")
    stored = stack.sql(
        f"SELECT number, hash, parent_hash, _trace_scope FROM {table['storage_location']} ORDER BY number"
    )
    chain = canonical(devchain, head - 2)
    assert [(r["number"], r["hash"]) for r in stored] == sorted(chain.items())  # one row per block, new branch
    assert stored[16]["_trace_scope"] == '{"c":null,"p":null,"r":[16,16]}'  # stored under the block's range
    [files] = stack.sql("SELECT storage_location FROM current_dataset_versions WHERE dataset_name = 'heads_files'")
    folder = stack.home / "objects" / files["storage_location"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}_{n}.parquet" for n in chain)
    assert pq.read_table(folder / "16_16.parquet").to_pylist()[0]["hash"] == chain[16]
