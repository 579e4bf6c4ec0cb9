"""devchain over real HTTP: chain consistency, determinism, reorgs, the control API, batches, bad requests, and
cryo extracting from it."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import socket
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from tests.support.devchain import Devchain, RpcCallError, running_devchain
from tests.support.stack import wait_for


def _blocks(chain: Devchain, start: int, end: int) -> list[dict[str, Any]]:
    return [chain.rpc("eth_getBlockByNumber", hex(n), True) for n in range(start, end + 1)]


def _snapshot(chain: Devchain) -> list[dict[str, Any]]:
    """Every block with full transactions and receipts: what two equal chains must agree on."""
    head = int(chain.rpc("eth_blockNumber"), 16)
    return [
        {"block": block, "receipts": chain.rpc("eth_getBlockReceipts", block["number"])}
        for block in _blocks(chain, 0, head)
    ]


def test_blocks_transactions_receipts_and_logs_are_consistent(devchain: Devchain) -> None:
    assert devchain.rpc("eth_chainId") == hex(31337)
    head = int(devchain.rpc("eth_blockNumber"), 16)
    assert head == 20 == devchain.head()["number"]
    blocks = _blocks(devchain, 0, head)
    assert blocks[0]["parentHash"] == "0x" + "00" * 32 and blocks[0]["transactions"] == []
    all_logs: list[dict[str, Any]] = []
    for previous, block in itertools.pairwise(blocks):
        assert block["parentHash"] == previous["hash"]
        assert int(block["number"], 16) == int(previous["number"], 16) + 1
        assert int(block["timestamp"], 16) > int(previous["timestamp"], 16)
        assert len(block["hash"]) == 66 and len(block["logsBloom"]) == 2 + 512
        assert block["transactions"], "every mined block has transactions"
        assert devchain.rpc("eth_getBlockByHash", block["hash"], True) == block
        hashes_only = devchain.rpc("eth_getBlockByNumber", block["number"], False)
        assert hashes_only["transactions"] == [tx["hash"] for tx in block["transactions"]]
        assert {k: v for k, v in hashes_only.items() if k != "transactions"} == {
            k: v for k, v in block.items() if k != "transactions"
        }
        receipts = devchain.rpc("eth_getBlockReceipts", block["number"])
        assert devchain.rpc("eth_getBlockReceipts", block["hash"]) == receipts
        assert len(receipts) == len(block["transactions"])
        cumulative = 0
        for index, (tx, receipt) in enumerate(zip(block["transactions"], receipts, strict=True)):
            assert tx["blockHash"] == receipt["blockHash"] == block["hash"]
            assert tx["blockNumber"] == receipt["blockNumber"] == block["number"]
            assert int(tx["transactionIndex"], 16) == int(receipt["transactionIndex"], 16) == index
            assert receipt["transactionHash"] == tx["hash"] and receipt["from"] == tx["from"]
            assert devchain.rpc("eth_getTransactionReceipt", tx["hash"]) == receipt
            assert devchain.rpc("eth_getTransactionByHash", tx["hash"]) == tx
            cumulative += int(receipt["gasUsed"], 16)
            assert int(receipt["cumulativeGasUsed"], 16) == cumulative
            assert int(receipt["gasUsed"], 16) <= int(tx["gas"], 16)
            for log in receipt["logs"]:
                assert log["transactionHash"] == tx["hash"] and log["blockHash"] == block["hash"]
                assert int(log["logIndex"], 16) == len([x for x in all_logs if x["blockHash"] == block["hash"]])
                all_logs.append(log)
        assert int(block["gasUsed"], 16) == cumulative
    assert len({tx["hash"] for block in blocks for tx in block["transactions"]}) == sum(
        len(block["transactions"]) for block in blocks
    )
    assert all_logs, "the synthetic chain has logs"
    assert devchain.rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head)}) == all_logs
    assert devchain.rpc("eth_getLogs", {"blockHash": blocks[5]["hash"]}) == [
        log for log in all_logs if log["blockHash"] == blocks[5]["hash"]
    ]


def test_get_logs_filters_by_address_and_topics(devchain: Devchain) -> None:
    every = devchain.rpc("eth_getLogs", {"fromBlock": "earliest", "toBlock": "latest"})
    address = every[0]["address"]
    topic0 = every[0]["topics"][0]
    by_address = devchain.rpc("eth_getLogs", {"fromBlock": "0x0", "address": address})
    assert by_address and by_address == [log for log in every if log["address"] == address]
    other = next(log["address"] for log in every if log["address"] != address)
    both = devchain.rpc("eth_getLogs", {"fromBlock": "0x0", "address": [address, other]})
    assert both == [log for log in every if log["address"] in {address, other}]
    by_topic = devchain.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [topic0]})
    assert by_topic == [log for log in every if log["topics"][0] == topic0]
    sender_topic = every[0]["topics"][1]
    second = devchain.rpc("eth_getLogs", {"fromBlock": "0x0", "topics": [None, [sender_topic]]})
    assert second == [log for log in every if log["topics"][1] == sender_topic]
    window = devchain.rpc("eth_getLogs", {"fromBlock": "0x3", "toBlock": "0x5"})
    assert window == [log for log in every if 3 <= int(log["blockNumber"], 16) <= 5]
    assert devchain.rpc("eth_getLogs", {"fromBlock": "0x0", "address": "0x" + "ab" * 20}) == []
    assert devchain.rpc("eth_getLogs", {"fromBlock": hex(10_000), "toBlock": hex(10_001)}) == []


def test_a_chain_is_a_function_of_its_seed_and_operations(tmp_path: Path) -> None:
    def build(seed: int, operations: list[tuple[str, int]]) -> list[dict[str, Any]]:
        with running_devchain(tmp_path / f"seed{seed}", seed=seed, initial_blocks=5) as chain:
            for operation, amount in operations:
                if operation == "mine":
                    chain.mine(amount)
                else:
                    chain.reorg(amount)
            return _snapshot(chain)

    operations = [("mine", 4), ("reorg", 3), ("mine", 2), ("reorg", 1)]
    first = build(11, operations)
    assert build(11, operations) == first
    assert len(first) == 5 + 4 + 1 + 2 + 1 + 1
    other_seed = build(12, operations)
    assert [b["block"]["hash"] for b in other_seed] != [b["block"]["hash"] for b in first]
    without_last_reorg = build(11, operations[:-1])
    assert without_last_reorg[:-1] == first[: len(without_last_reorg) - 1]
    assert without_last_reorg[-1] != first[len(without_last_reorg) - 1]


def test_reorg_replaces_the_last_blocks_with_a_different_branch(devchain: Devchain) -> None:
    before = _snapshot(devchain)
    answer = devchain.reorg(4)
    assert answer["number"] == 21 and answer["reorgs"] == 1
    assert answer["replaced"] == {"start": 17, "end": 20}
    after = _snapshot(devchain)
    assert len(after) == len(before) + 1
    assert after[:17] == before[:17]
    assert after[17]["block"]["parentHash"] == before[16]["block"]["hash"]
    for previous, entry in itertools.pairwise(after):
        assert entry["block"]["parentHash"] == previous["block"]["hash"]
    old_txs = {tx["hash"] for entry in before[17:] for tx in entry["block"]["transactions"]}
    for old, new in zip(before[17:], after[17:21], strict=True):
        assert new["block"]["hash"] != old["block"]["hash"]
        assert new["block"]["number"] == old["block"]["number"]
        assert new["block"]["transactions"] != old["block"]["transactions"]
        assert {tx["hash"] for tx in new["block"]["transactions"]}.isdisjoint(old_txs)
        assert [r["logs"] for r in new["receipts"]] != [r["logs"] for r in old["receipts"]]
    replaced_tx = next(iter(old_txs))
    assert devchain.rpc("eth_getTransactionReceipt", replaced_tx) is None
    assert devchain.rpc("eth_getBlockByHash", before[18]["block"]["hash"], False) is None
    assert devchain.head()["hash"] == after[-1]["block"]["hash"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("reorg", {"depth": 0}, "depth must be an integer >= 1, got 0"),
        ("reorg", {"depth": 21}, "depth must be between 1 and the head's number (20), got 21"),
        ("reorg", {}, "depth must be an integer >= 1, got null"),
        ("mine", {"blocks": "3"}, 'blocks must be an integer between 1 and 100000, got "3"'),
        ("mine", {"blocks": 0}, "blocks must be an integer between 1 and 100000, got 0"),
        ("mining", {"block_time_ms": -5}, "block_time_ms must be an integer >= 1, got -5"),
    ],
)
def test_control_refuses_bad_operations(devchain: Devchain, path: str, body: dict[str, Any], message: str) -> None:
    answer = devchain.control("POST", path, body)
    assert answer.status_code == 400
    assert answer.json() == {"error": message}
    assert devchain.head()["number"] == 20


def test_control_bad_bodies_paths_and_methods(devchain: Devchain) -> None:
    not_json = devchain.post(b"{nope", path="/control/mine")
    assert not_json.status_code == 400 and "the body is not JSON" in not_json.json()["error"]
    a_list = devchain.post([1], path="/control/mine")
    assert a_list.status_code == 400 and a_list.json() == {"error": "the body must be a JSON object"}
    assert devchain.control("GET", "mine").status_code == 405
    assert devchain.control("GET", "nowhere").status_code == 404
    assert devchain.post(b"", path="/elsewhere").status_code == 404
    get_rpc = devchain._http.get(devchain.url + "/")
    assert get_rpc.status_code == 405 and get_rpc.json() == {"error": "JSON-RPC takes POST /"}


def test_batches_answer_in_order_and_skip_notifications(devchain: Devchain) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "method": "eth_chainId"},  # a notification: no answer
        {"jsonrpc": "2.0", "id": "b", "method": "eth_nope", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBlockByNumber", "params": ["0x2", False]},
        7,
    ]
    answers = devchain.post(batch).json()
    assert [answer["id"] for answer in answers] == [1, "b", 3, None]
    assert answers[0]["result"] == hex(20)
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["result"]["number"] == "0x2"
    assert answers[3]["error"]["code"] == -32600
    only_notifications = devchain.post([{"jsonrpc": "2.0", "method": "eth_chainId"}])
    assert only_notifications.status_code == 200 and only_notifications.content == b""
    empty = devchain.post([]).json()
    assert empty["error"] == {"code": -32600, "message": "invalid request: empty batch"}


@pytest.mark.parametrize(
    ("method", "params", "code", "message"),
    [
        ("eth_getBlockByNumber", ["0x1"], -32602, "expected 2 params, got 1"),
        ("eth_getBlockByNumber", ["one", False], -32602, "params[0] must be a block number (hex quantity) or one of"),
        ("eth_getBlockByNumber", [1, False], -32602, "params[0] must be a block number"),
        ("eth_getBlockByNumber", ["0x1", "yes"], -32602, "params[1] must be a boolean"),
        ("eth_getBlockByHash", ["0x12", False], -32602, "params[0] must be 0x and 64 hex digits"),
        ("eth_getTransactionReceipt", ["0x" + "zz" * 32], -32602, "params[0] must be 0x and 64 hex digits"),
        ("eth_getBlockReceipts", [], -32602, "expected 1 params, got 0"),
        ("eth_getLogs", [{"fromBlock": "0x5", "toBlock": "0x2"}], -32602, "fromBlock 5 is after toBlock 2"),
        ("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(20_000)}], -32005, "query exceeds max block range"),
        ("eth_getLogs", [{"address": "0x12"}], -32602, "params[0].address must be 0x and 40 hex digits"),
        ("eth_getLogs", [{"topics": [None, 5]}], -32602, "params[0].topics[1] must be null, a topic or a list"),
        ("eth_getLogs", [{"blockHash": "0x" + "00" * 32, "fromBlock": "0x1"}], -32602, "cannot be combined"),
        ("eth_getLogs", [{"frmBlock": "0x1"}], -32602, "unknown filter fields ['frmBlock']"),
        ("eth_sendTransaction", [{}], -32601, "the method eth_sendTransaction does not exist"),
    ],
)
def test_bad_calls_get_json_rpc_errors(
    devchain: Devchain, method: str, params: list[Any], code: int, message: str
) -> None:
    with pytest.raises(RpcCallError) as refused:
        devchain.rpc(method, *params)
    assert refused.value.code == code
    assert message in refused.value.message


def test_malformed_requests(devchain: Devchain) -> None:
    garbage = devchain.post(b"{not json")
    assert garbage.status_code == 200 and garbage.json()["error"]["code"] == -32700
    no_version = devchain.post({"id": 1, "method": "eth_chainId"}).json()
    assert no_version["id"] == 1 and no_version["error"]["code"] == -32600
    params_object = devchain.post({"jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": {}}).json()
    assert params_object["error"] == {"code": -32602, "message": "params must be an array"}
    assert devchain.rpc("eth_getBlockByNumber", hex(999), False) is None
    assert devchain.rpc("eth_getBlockReceipts", hex(999)) is None
    assert devchain.rpc("eth_getTransactionReceipt", "0x" + "00" * 32) is None


def _connect(chain: Devchain) -> socket.socket:
    url = urlsplit(chain.url)
    return socket.create_connection((url.hostname, url.port), timeout=10)


def _read_answer(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer from `stream`: status, headers (lower-case names), body."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline().strip()) != b"":
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, stream.read(int(headers.get("content-length", 0)))


def _call(method: str, call_id: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method, "params": []}).encode()


def test_http_keep_alive_pipelining_continue_chunked_and_bad_requests(devchain: Devchain) -> None:
    """The HTTP layer as clients other than httpx use it: requests pipelined on one connection are answered in
    order, `Expect: 100-continue` is answered, chunked bodies are read; a malformed request or a body over 8 MB
    answers 4xx and closes, and so does `Connection: close`."""
    first, second = _call("eth_chainId", 1), _call("eth_blockNumber", 2)
    with _connect(devchain) as conn, conn.makefile("rb") as stream:
        conn.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
            + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(second), second)
        )
        answers = [_read_answer(stream) for _ in range(2)]
        assert [(status, json.loads(body)["id"]) for status, _, body in answers] == [(200, 1), (200, 2)]
        assert json.loads(answers[1][2])["result"] == hex(20)

        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(first))
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
        conn.sendall(first)
        assert json.loads(_read_answer(stream)[2])["result"] == "0x7a69"

        chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second)
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        assert json.loads(_read_answer(stream)[2])["id"] == 2

        conn.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
        )
        status, headers, _ = _read_answer(stream)
        assert status == 200 and headers["connection"] == "close" and stream.read() == b""

    with _connect(devchain) as conn, conn.makefile("rb") as stream:
        conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = _read_answer(stream)
        assert status == 400 and "malformed HTTP request" in json.loads(body)["error"] and stream.read() == b""

    with _connect(devchain) as conn, conn.makefile("rb") as stream:
        size = 8 * 1024 * 1024 + 1
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b" " * size)
        status, _, body = _read_answer(stream)
        assert status == 413 and json.loads(body) == {"error": "request bodies are at most 8388608 bytes"}
    assert devchain.head()["number"] == 20  # the server carries on


def test_block_time_mining(tmp_path: Path) -> None:
    with running_devchain(tmp_path, seed=3, block_time_ms=20) as chain:
        wait_for(lambda: chain.head()["number"] >= 5, 10, "blocks mined by the block timer")
        stopped = chain.mining(None)
        assert stopped["block_time_ms"] is None
        time.sleep(0.2)
        still = chain.head()["number"]
        time.sleep(0.2)
        assert chain.head()["number"] == still
        chain.mining(10)
        wait_for(lambda: chain.head()["number"] >= still + 3, 10, "mining to resume")
        assert chain.stats()["block_time_ms"] == 10


def test_cryo_extracts_blocks_transactions_and_logs(devchain: Devchain, tmp_path: Path) -> None:
    import cryo

    head = devchain.head()["number"]
    blocks = _blocks(devchain, 1, head)
    logs = devchain.rpc("eth_getLogs", {"fromBlock": "0x1", "toBlock": hex(head)})
    # async_freeze under asyncio.run: `cryo.freeze` leaves its event loop open (a ResourceWarning later)
    asyncio.run(
        cryo.async_freeze(
            ["blocks", "transactions", "logs"],
            blocks=[f"1:{head + 1}"],
            rpc=devchain.url,
            output_dir=str(tmp_path),
            verbose=False,
            max_concurrent_requests=8,
        )
    )
    files = {path.name.split("__")[1]: pq.read_table(path) for path in tmp_path.glob("*.parquet")}
    assert sorted(files) == ["blocks", "logs", "transactions"]
    assert files["blocks"].column("block_number").to_pylist() == list(range(1, head + 1))
    assert [b.hex() for b in files["blocks"].column("block_hash").to_pylist()] == [b["hash"][2:] for b in blocks]
    tx_hashes = [tx["hash"][2:] for block in blocks for tx in block["transactions"]]
    assert [t.hex() for t in files["transactions"].column("transaction_hash").to_pylist()] == tx_hashes
    assert files["logs"].num_rows == len(logs)
    stats = devchain.stats()
    assert stats["methods"]["eth_getBlockReceipts"] == head


# SHA-256 of the answer to `_every_encoding`'s batch on seed 7's 20 blocks, then again after a reorg of 3: the bytes
# devchain answered before its encoder shared the formatting of a block's fields between encodings (the speed
# work must not change one byte of what clients get).
ENCODINGS_DIGEST = "96949bab32ecb1764c8c70eee23d6e4778dd7e98e7b776e6aba97d921b894729"


def _every_encoding(chain: Devchain) -> bytes:
    head = int(chain.rpc("eth_blockNumber"), 16)
    calls: list[tuple[str, list[Any]]] = []
    for number in range(head + 1):
        calls += [
            ("eth_getBlockByNumber", [hex(number), False]),
            ("eth_getBlockByNumber", [hex(number), True]),
            ("eth_getBlockReceipts", [hex(number)]),
        ]
    blocks = [chain.rpc("eth_getBlockByNumber", hex(number), False) for number in range(head + 1)]
    for block in blocks:
        calls += [("eth_getBlockByHash", [block["hash"], True])]
        calls += [("eth_getTransactionByHash", [tx]) for tx in block["transactions"]]
        calls += [("eth_getTransactionReceipt", [tx]) for tx in block["transactions"]]
    calls += [("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(head)}]), ("eth_chainId", [])]
    batch: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params} for i, (method, params) in enumerate(calls)
    ]
    batch[-1]["id"] = "last"  # a string id
    answer = chain.post(batch)
    assert answer.status_code == 200
    return answer.content


def test_answers_are_byte_for_byte_stable(devchain: Devchain) -> None:
    digest = hashlib.sha256()
    digest.update(_every_encoding(devchain))
    devchain.reorg(3)
    digest.update(_every_encoding(devchain))
    assert digest.hexdigest() == ENCODINGS_DIGEST
