"""`cryo_ingest` in real dispatcher and worker processes against a real devchain: one Parquet file per range in
the versioned location, replaced on re-run, its data event with the row count; a worker SIGKILLed mid-extract
is retried with nothing missing or doubled; extractions of one DAG sharing an operator child each use their own
slot's RPC, one that hangs is killed at its timeout and retried with the one beside it, and a SIGTERMed worker
lets both finish; a dead or garbled RPC fails the task with a clear error after retries with backoff, and nothing
becomes visible; bad config is refused at deploy, a bad input at once.

Until range_aggregator lands, a python source (`tests.support.udfs:block_ranges`) emits the range manifests.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import select
import signal
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.support.devchain import Devchain, running_devchain
from tests.support.stack import Stack, free_port, wait_for
from trace_core.dag import DagConfigError, load_dag_yaml

RANGES = "tests.support.udfs:block_ranges"


def _dag(url: str, ranges: dict[str, Any], extra_jobs: str = "", concurrency: int = 2) -> str:
    port = url.rsplit(":", 1)[1]
    config = ", ".join(
        f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}" for key, value in ranges.items()
    )
    return f"""
dag: chain
worker_pools:
  rpc:
    - env: {{RPC_URL: "{url}", DEVCHAIN_PORT: "{port}"}}
    - env: {{RPC_URL: "{url}", DEVCHAIN_PORT: "{port}"}}
jobs:
  ranges:
    activation: source
    operator: python
    config: {{function: "{RANGES}", {config}}}
  blocks:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges, output: 0}}}}]
    execution_strategy: PerPartition
    worker_pool: rpc
    scaling: {{max_concurrency: {concurrency}}}
    max_attempts: 4
    config: {{datatype: blocks}}
    outputs: [{{storage: s3, format: parquet}}]
  transactions:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges, output: 0}}}}]
    execution_strategy: PerPartition
    scaling: {{max_concurrency: {concurrency}}}
    max_attempts: 4
    config: {{datatype: transactions, rpc_url: "{url}", max_concurrent_requests: 2}}
    outputs: [{{storage: s3, format: parquet}}]
  logs:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges, output: 0}}}}]
    execution_strategy: PerPartition
    worker_pool: rpc
    max_attempts: 4
    config: {{datatype: logs, rpc_url: "http://127.0.0.1:${{DEVCHAIN_PORT}}"}}
    outputs: [{{storage: s3, format: parquet}}]
{extra_jobs}
publish:
  - {{job: blocks, dataset: eth_blocks}}
  - {{job: transactions, dataset: eth_transactions}}
  - {{job: logs, dataset: eth_logs}}
"""


def _files(stack: Stack, dataset: str) -> list[str]:
    folder = stack.home / "objects" / stack.location(dataset)
    return sorted(path.name for path in folder.glob("*.parquet")) if folder.is_dir() else []


def _rows(stack: Stack, dataset: str, columns: str) -> list[tuple[Any, ...]]:
    folder = stack.home / "objects" / stack.location(dataset)
    with duckdb.connect() as conn:
        return conn.execute(f"select {columns} from read_parquet('{folder}/*.parquet') order by all").fetchall()


def _chain_contents(chain: Devchain, first: int, last: int) -> dict[str, list[tuple[Any, ...]]]:
    blocks = [chain.rpc("eth_getBlockByNumber", hex(n), True) for n in range(first, last + 1)]
    logs = chain.rpc("eth_getLogs", {"fromBlock": hex(first), "toBlock": hex(last)})
    return {
        "blocks": [(int(b["number"], 16), bytes.fromhex(b["hash"][2:])) for b in blocks],
        "transactions": sorted(
            (int(tx["blockNumber"], 16), int(tx["transactionIndex"], 16), bytes.fromhex(tx["hash"][2:]))
            for b in blocks
            for tx in b["transactions"]
        ),
        "logs": sorted((int(log["blockNumber"], 16), int(log["logIndex"], 16)) for log in logs),
    }


def _unfinished(stack: Stack) -> list[dict[str, Any]]:
    return stack.sql(
        """SELECT j.job_name, t.status, t.last_error FROM tasks t JOIN jobs j USING (job_id)
           WHERE t.status <> 'Completed'"""
    )


def _data_events(stack: Stack, job: str) -> list[dict[str, Any]]:
    return stack.sql(
        """SELECT e.range_start, e.range_end, e.payload FROM events e JOIN tasks t ON t.task_id = e.producer_task_id
           JOIN jobs j ON j.job_id = t.job_id WHERE j.job_name = %(job)s AND e.kind = 'data'
           ORDER BY e.event_id""",
        {"job": job},
    )


def test_each_range_becomes_one_parquet_file_replaced_on_rerun(stack: Stack, tmp_path: Path) -> None:
    with running_devchain(tmp_path / "chain", seed=5, initial_blocks=24) as chain:
        ranges = {"first": 1, "last": 20, "size": 5, "again": [16, 20], "dir": str(tmp_path)}
        stack.deploy(_dag(chain.url, ranges))
        stack.start_worker()
        stack.wait_jobs_done({"blocks": 4, "transactions": 4, "logs": 4}, timeout_s=90)
        for job in ("blocks", "transactions", "logs"):
            assert stack.task_statuses(job) == ["Completed"] * 4, _unfinished(stack)

        expected = ["1_5.parquet", "6_10.parquet", "11_15.parquet", "16_20.parquet"]
        for dataset in ("eth_blocks", "eth_transactions", "eth_logs"):
            assert _files(stack, dataset) == sorted(expected)
        before = _chain_contents(chain, 1, 20)
        assert _rows(stack, "eth_blocks", "block_number, block_hash") == before["blocks"]
        assert (
            _rows(stack, "eth_transactions", "block_number, transaction_index, transaction_hash")
            == (before["transactions"])
        )
        assert _rows(stack, "eth_logs", "block_number, log_index") == before["logs"]
        events = _data_events(stack, "transactions")
        # ranges of different partitions complete in any order (max_concurrency 2)
        assert sorted((e["range_start"], e["range_end"]) for e in events) == [(1, 5), (6, 10), (11, 15), (16, 20)]
        per_range = {
            (s, e): sum(1 for row in before["transactions"] if s <= row[0] <= e)
            for s, e in [(1, 5), (6, 10), (11, 15), (16, 20)]
        }
        assert [e["payload"] for e in events] == [
            {"rows": per_range[(e["range_start"], e["range_end"])]} for e in events
        ]

        # the chain changes under 16..20 and the range comes again: its file is replaced, not added to
        chain.reorg(5)
        Path(tmp_path, "go").write_text("1")
        stack.wait_jobs_done({"blocks": 5, "transactions": 5, "logs": 5}, timeout_s=90)
        after = _chain_contents(chain, 1, 20)
        assert after["blocks"][:15] == before["blocks"][:15] and after["blocks"][15:] != before["blocks"][15:]
        assert _files(stack, "eth_blocks") == sorted(expected)
        assert _rows(stack, "eth_blocks", "block_number, block_hash") == after["blocks"]
        assert (
            _rows(stack, "eth_transactions", "block_number, transaction_index, transaction_hash")
            == (after["transactions"])
        )
        assert _rows(stack, "eth_logs", "block_number, log_index") == after["logs"]


def test_a_worker_killed_mid_extract_is_retried_without_missing_or_duplicate_rows(stack: Stack, tmp_path: Path) -> None:
    with running_devchain(tmp_path / "chain", seed=9, initial_blocks=4_000) as chain:
        stack.deploy(_dag(chain.url, {"first": 0, "last": 3_999, "size": 2_000}))
        worker = stack.start_worker()

        def extracting() -> bool:
            return bool(
                stack.sql(
                    """SELECT 1 FROM task_attempts a JOIN tasks t USING (task_id) JOIN jobs j USING (job_id)
                       WHERE j.job_name = 'transactions' AND a.status = 'Running'"""
                )
            )

        wait_for(extracting, 60, "a transactions extract to be running")
        worker.kill(signal.SIGKILL)
        stack.start_worker()
        stack.wait_jobs_done({"blocks": 2, "transactions": 2, "logs": 2}, timeout_s=110)

        assert set(stack.task_statuses("transactions")) == {"Completed"}
        interrupted = stack.sql(
            """SELECT a.status FROM task_attempts a JOIN tasks t USING (task_id) JOIN jobs j USING (job_id)
               WHERE j.job_name = 'transactions' AND a.attempt_number = 1 AND a.status <> 'Succeeded'"""
        )
        assert interrupted, "the killed worker's attempt was retried"
        expected = _chain_contents(chain, 0, 3_999)
        rows = _rows(stack, "eth_transactions", "block_number, transaction_index, transaction_hash")
        assert len(rows) == len(set(rows)) == len(expected["transactions"])
        assert rows == expected["transactions"]
        assert _rows(stack, "eth_blocks", "block_number, block_hash") == expected["blocks"]


class _Relay(http.server.ThreadingHTTPServer):
    """An RPC in front of a devchain. The first `eth_getBlockByNumber` with params `hang` waits until its client goes
    away (the extraction asking for it hangs), then sets `released`; the first with params in `held` waits until
    `released` is set. It counts the block requests it relays."""

    def __init__(
        self, upstream: str, hang: list[Any] | None, held: list[list[Any]], released: threading.Event, seen: list[Any]
    ) -> None:
        super().__init__(("127.0.0.1", 0), _RelayHandler)
        self.upstream, self.hang, self.held, self.released, self.seen = upstream, hang, held, released, seen
        self.blocks = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> _Relay:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _RelayHandler(http.server.BaseHTTPRequestHandler):
    server: _Relay

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        call = json.loads(body)
        relay = self.server
        params = call["params"] if call.get("method") == "eth_getBlockByNumber" else None
        if params is not None:
            relay.blocks += 1
        if params is not None and params not in relay.seen and (params == relay.hang or params in relay.held):
            relay.seen.append(params)
            if params == relay.hang:
                _wait_until_closed(self.connection)
                relay.released.set()
                return
            relay.released.wait(60)
        request = urllib.request.Request(relay.upstream, body, {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            answered = answer.read()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the held client may be gone
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answered)))
            self.end_headers()
            self.wfile.write(answered)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _wait_until_closed(connection: socket.socket) -> None:
    """Block until the client closes `connection` (for at most a minute)."""
    for _ in range(600):
        readable, _, _ = select.select([connection], [], [], 0.1)
        if readable and not connection.recv(1, socket.MSG_PEEK):
            return


def _two_extractions(relays: list[_Relay], blocks_timeout_s: int) -> str:
    """A DAG extracting blocks 1..10 as one range, blocks and transactions, on a pool of a slot per relay."""
    jobs = "".join(
        f"""
  {datatype}:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges, output: 0}}}}]
    worker_pool: rpc
    timeout_s: {timeout_s}
    max_attempts: 4
    config: {{datatype: {datatype}, max_concurrent_requests: 2}}
    outputs: [{{storage: s3, format: parquet}}]"""
        for datatype, timeout_s in (("blocks", blocks_timeout_s), ("transactions", 60))
    )
    slots = "".join(
        f"""
    - env: {{RPC_URL: "{relay.url}"}}"""
        for relay in relays
    )
    return f"""
dag: two
worker_pools:
  rpc:{slots}
jobs:
  ranges:
    activation: source
    operator: python
    config: {{function: "{RANGES}", first: 1, last: 10, size: 10}}{jobs}
publish:
  - {{job: blocks, dataset: eth_blocks}}
  - {{job: transactions, dataset: eth_transactions}}
"""


def _first_attempts(stack: Stack) -> dict[str, tuple[str, str | None]]:
    return {
        row["job_name"]: (row["status"], row["error"])
        for row in stack.sql(
            """SELECT j.job_name, a.status, a.error FROM task_attempts a JOIN tasks t USING (task_id)
               JOIN jobs j USING (job_id) WHERE a.attempt_number = 1"""
        )
    }


def _assert_extracted(stack: Stack, chain: Devchain) -> None:
    for job in ("blocks", "transactions"):
        assert stack.task_statuses(job) == ["Completed"], _unfinished(stack)
    contents = _chain_contents(chain, 1, 10)
    assert _files(stack, "eth_blocks") == _files(stack, "eth_transactions") == ["1_10.parquet"]
    assert _rows(stack, "eth_blocks", "block_number, block_hash") == contents["blocks"]
    assert (
        _rows(stack, "eth_transactions", "block_number, transaction_index, transaction_hash")
        == contents["transactions"]
    )


def test_extractions_sharing_a_child_use_their_slots_rpc_and_a_hung_one_is_killed_at_its_timeout(
    stack: Stack, tmp_path: Path
) -> None:
    with running_devchain(tmp_path / "chain", seed=3, initial_blocks=12) as chain:
        # blocks' request for block 3 hangs; transactions' for block 8 waits until that one's client is gone
        released, seen = threading.Event(), list[Any]()
        relays = [_Relay(chain.url, ["0x3", False], [["0x8", True]], released, seen) for _ in range(2)]
        with relays[0], relays[1]:
            stack.deploy(_two_extractions(relays, blocks_timeout_s=5))
            stack.start_worker()
            stack.wait_jobs_done({"blocks": 1, "transactions": 1}, timeout_s=120)
        _assert_extracted(stack, chain)
        # each extraction asked its own slot's RPC, though both ran in one operator child
        assert all(relay.blocks for relay in relays), [relay.blocks for relay in relays]
        first = _first_attempts(stack)
        # the hung extraction was killed at its timeout (the dispatcher may have ended its lease, which the timeout
        # caps, first), and the one running beside it in its child with it: both were retried
        status, error = first["blocks"]
        timed_out = (status, error) == ("Failed", "timed out after 5s")
        assert timed_out or (status == "TimedOut" and (error or "").startswith("lease expired")), first
        assert first["transactions"] == ("Failed", "the operator process exited with code -9"), first


def test_sigterm_lets_extractions_sharing_a_child_finish(stack: Stack, tmp_path: Path) -> None:
    with running_devchain(tmp_path / "chain", seed=4, initial_blocks=12) as chain:
        released, seen = threading.Event(), list[Any]()
        relays = [_Relay(chain.url, None, [["0x3", False], ["0x8", True]], released, seen) for _ in range(2)]
        with relays[0], relays[1]:
            stack.deploy(_two_extractions(relays, blocks_timeout_s=60))
            worker = stack.start_worker()
            wait_for(lambda: len(seen) == 2, 60, "both extractions to be waiting for the RPC")
            worker.popen.send_signal(signal.SIGTERM)
            wait_for(lambda: "worker.draining" in worker.output(), 30, "the worker to drain")
            released.set()
            assert worker.popen.wait(timeout=60) == 0
        _assert_extracted(stack, chain)
        assert _first_attempts(stack) == {
            "ranges": ("Succeeded", None),
            "blocks": ("Succeeded", None),
            "transactions": ("Succeeded", None),
        }


class _Garbage(http.server.BaseHTTPRequestHandler):
    """An 'RPC' that answers every call with an HTML error page."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def garbage_rpc() -> Iterator[str]:
    """The URL of a loopback HTTP server that answers JSON-RPC calls with HTML."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("rpc", "error"),
    [
        ("down", "the RPC at http://127.0.0.1:{port} cannot be reached"),
        ("garbage", "answered eth_getBlockByNumber with something that is not JSON-RPC: '<html><body>502"),
    ],
)
def test_a_dead_or_garbled_rpc_fails_after_retries_and_writes_nothing(
    stack: Stack, garbage_rpc: str, rpc: str, error: str
) -> None:
    url = garbage_rpc if rpc == "garbage" else f"http://127.0.0.1:{free_port()}"
    stack.deploy(_dag(url, {"first": 1, "last": 4, "size": 4}, concurrency=1))
    stack.start_worker()
    stack.wait_jobs_done({"blocks": 1, "transactions": 1, "logs": 1}, timeout_s=60)
    for job in ("blocks", "transactions", "logs"):
        [task] = stack.sql(
            """SELECT t.task_id, t.status, t.last_error, t.attempt_count FROM tasks t JOIN jobs j USING (job_id)
               WHERE j.job_name = %(job)s""",
            {"job": job},
        )
        assert task["status"] == "Failed" and task["attempt_count"] == 4
        assert error.format(port=url.rsplit(":", 1)[1]) in task["last_error"]
        attempts = stack.sql(
            "SELECT status, error, started_at, finished_at FROM task_attempts WHERE task_id = %(t)s "
            "ORDER BY attempt_number",
            {"t": task["task_id"]},
        )
        assert [a["status"] for a in attempts] == ["Failed"] * 4
        assert all(error.format(port=url.rsplit(":", 1)[1]) in a["error"] for a in attempts)
        # TRACE_RETRY_BASE_S is 0.2 in tests: retry n waits 0.2·2^(n-1) s, ±50%
        waits = [(b["started_at"] - a["finished_at"]).total_seconds() for a, b in itertools.pairwise(attempts)]
        assert all(wait >= 0.1 * 2**n for n, wait in enumerate(waits)), waits
        assert _data_events(stack, job) == []
    for dataset in ("eth_blocks", "eth_transactions", "eth_logs"):
        assert _files(stack, dataset) == []


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ("{datatype: receipts}", "config.datatype", "Input should be 'blocks', 'transactions' or 'logs'"),
        ("{}", "config.datatype", "operator cryo_ingest needs this field"),
        ("{datatype: logs, rpc_url: 'ftp://node'}", "config.rpc_url", "must be an http:// or https:// URL"),
        ("{datatype: logs, max_concurrent_requests: 0}", "config.max_concurrent_requests", "greater than or equal"),
        ("{datatype: logs, chunk_size: 5}", "config.chunk_size", "unknown key 'chunk_size' of operator cryo_ingest"),
    ],
)
def test_bad_configs_are_refused_at_deploy(config: str, field: str, message: str) -> None:
    text = _dag("http://127.0.0.1:8545", {"first": 1, "last": 4, "size": 4}).replace(
        "config: {datatype: blocks}", f"config: {config}"
    )
    with pytest.raises(DagConfigError) as refused:
        load_dag_yaml(text)
    [issue] = refused.value.issues
    assert issue.field == f"jobs.blocks.{field}" and message in issue.message and issue.line is not None


def test_inputs_without_a_range_and_unset_variables_fail_at_once(stack: Stack, devchain: Devchain) -> None:
    extra = f"""
  cursors:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:count_to", count: 1}}
  no_range:
    operator: cryo_ingest
    inputs: [{{from: {{job: cursors, output: 0}}}}]
    config: {{datatype: blocks, rpc_url: "{devchain.url}"}}
    max_attempts: 3
    outputs: [{{storage: s3, format: parquet}}]
  no_rpc:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges, output: 0}}}}]
    config: {{datatype: blocks, rpc_url: "http://${{NOT_IN_THE_SLOT}}/"}}
    max_attempts: 3
    outputs: [{{storage: s3, format: parquet}}]
"""
    stack.deploy(_dag(devchain.url, {"first": 1, "last": 4, "size": 4}, extra_jobs=extra))
    stack.start_worker()
    stack.wait_jobs_done({"no_range": 1, "no_rpc": 1, "blocks": 1}, timeout_s=60)
    failures = {
        row["job_name"]: row
        for row in stack.sql(
            """SELECT j.job_name, t.status, t.attempt_count, t.last_error FROM tasks t JOIN jobs j USING (job_id)
               WHERE j.job_name IN ('no_range', 'no_rpc')"""
        )
    }
    assert {job: (row["status"], row["attempt_count"]) for job, row in failures.items()} == {
        "no_range": ("Failed", 1),
        "no_rpc": ("Failed", 1),
    }
    assert "the input event's scope has no range" in failures["no_range"]["last_error"]
    assert (
        "config.rpc_url names a variable the slot's env does not set: 'NOT_IN_THE_SLOT'"
        in (failures["no_rpc"]["last_error"])
    )
    assert stack.task_statuses("blocks") == ["Completed"]
