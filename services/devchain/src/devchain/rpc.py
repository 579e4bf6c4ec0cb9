"""Ethereum JSON-RPC 2.0 over the chain: single calls and batches, with the standard error codes.

A body is answered with bytes: results are pre-encoded JSON text (see `encode`), spliced into the envelope.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devchain.chain import Block, Chain
from devchain.encode import Encoder, log_json, transaction_json

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
LIMIT_EXCEEDED = -32005  # as geth and most providers answer a too-wide eth_getLogs
MAX_LOG_RANGE = 10_000
MAX_BATCH = 10_000
CLIENT_VERSION = "devchain/0.1.0"
# block tags that name a block behind the head, as a node with finality would answer them
SAFE_DEPTH = 32
FINALIZED_DEPTH = 64
_BLOCK_NUMBER = "a block number (hex quantity) or one of latest, pending, earliest, safe, finalized"


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


@dataclass
class Stats:
    """What the server answered since it started: HTTP requests and JSON-RPC calls by method."""

    http_requests: int = 0
    rpc_calls: int = 0
    methods: Counter[str] = field(default_factory=Counter)


Handler = Callable[[list[Any]], bytes]


class Rpc:
    def __init__(self, chain: Chain, chain_id: int) -> None:
        self.chain = chain
        self.chain_id = chain_id
        self.encoder = Encoder(chain_id)
        self.stats = Stats()
        self._methods: dict[str, Handler] = {
            "eth_chainId": lambda params: _text(hex(self.chain_id)),
            "net_version": lambda params: _text(str(self.chain_id)),
            "web3_clientVersion": lambda params: _text(CLIENT_VERSION),
            "eth_blockNumber": lambda params: _text(hex(self.chain.head.number)),
            "eth_getBlockByNumber": self._block_by_number,
            "eth_getBlockByHash": self._block_by_hash,
            "eth_getBlockReceipts": self._block_receipts,
            "eth_getTransactionByHash": self._transaction_by_hash,
            "eth_getTransactionReceipt": self._transaction_receipt,
            "eth_getLogs": self._logs,
        }

    def answer(self, body: bytes) -> bytes | None:
        """The response body for a request body; None when it held only notifications."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            return _error_bytes(None, PARSE_ERROR, f"parse error: {error}")
        if isinstance(request, list):
            if not request:
                return _error_bytes(None, INVALID_REQUEST, "invalid request: empty batch")
            if len(request) > MAX_BATCH:
                return _error_bytes(None, INVALID_REQUEST, f"invalid request: a batch takes at most {MAX_BATCH} calls")
            answers = [answer for item in request if (answer := self._call(item)) is not None]
            return b"[%s]" % b",".join(answers) if answers else None
        return self._call(request)

    def _call(self, request: object) -> bytes | None:
        self.stats.rpc_calls += 1
        if not isinstance(request, dict):
            return _error_bytes(None, INVALID_REQUEST, "invalid request: a call is a JSON object")
        request_id = request.get("id")
        if not isinstance(request_id, str | int | float | type(None)) or isinstance(request_id, bool):
            return _error_bytes(None, INVALID_REQUEST, "invalid request: id must be a string, a number or null")
        notification = "id" not in request
        method = request.get("method")
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _error_bytes(request_id, INVALID_REQUEST, 'invalid request: needs "jsonrpc": "2.0" and a method')
        handler = self._methods.get(method)
        self.stats.methods[method if handler else "(unknown)"] += 1
        params = request.get("params", [])
        try:
            if handler is None:
                raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
            if not isinstance(params, list):
                raise _invalid("params must be an array")
            result = handler(params)
        except RpcError as error:
            return None if notification else _error_bytes(request_id, error.code, error.message)
        if notification:
            return None
        # one copy of the result (`+` copied it twice); an integer id (what clients send) is its digits
        encoded_id = b"%d" % request_id if type(request_id) is int else json.dumps(request_id).encode()
        return b"".join((b'{"jsonrpc":"2.0","id":', encoded_id, b',"result":', result, b"}"))

    # -- methods --------------------------------------------------------------------------------------------

    def _block_by_number(self, params: list[Any]) -> bytes:
        _arity(params, 2, 2)
        block = self.chain.block(self._block_number(params[0], "params[0]"))
        return b"null" if block is None else self.encoder.block(block, _flag(params[1], "params[1]"))

    def _block_by_hash(self, params: list[Any]) -> bytes:
        _arity(params, 2, 2)
        block = self.chain.block_by_hash(_bytes(params[0], 32, "params[0]"))
        return b"null" if block is None else self.encoder.block(block, _flag(params[1], "params[1]"))

    def _block_receipts(self, params: list[Any]) -> bytes:
        _arity(params, 1, 1)
        block = self._block(params[0], "params[0]")
        return b"null" if block is None else b"[%s]" % b",".join(self.encoder.receipts(block))

    def _transaction_by_hash(self, params: list[Any]) -> bytes:
        _arity(params, 1, 1)
        found = self.chain.transaction(_bytes(params[0], 32, "params[0]"))
        if found is None:
            return b"null"
        block, tx = found
        return transaction_json(block, tx, self.chain_id).encode()

    def _transaction_receipt(self, params: list[Any]) -> bytes:
        _arity(params, 1, 1)
        found = self.chain.transaction(_bytes(params[0], 32, "params[0]"))
        if found is None:
            return b"null"
        block, tx = found
        return self.encoder.receipts(block)[tx.index]

    def _logs(self, params: list[Any]) -> bytes:
        _arity(params, 1, 1)
        query = params[0]
        if not isinstance(query, dict):
            raise _invalid("params[0] must be a filter object")
        unknown = set(query) - {"fromBlock", "toBlock", "address", "topics", "blockHash"}
        if unknown:
            raise _invalid(f"params[0]: unknown filter fields {sorted(unknown)}")
        if "blockHash" in query:
            if "fromBlock" in query or "toBlock" in query:
                raise _invalid("params[0]: blockHash cannot be combined with fromBlock/toBlock")
            block = self.chain.block_by_hash(_bytes(query["blockHash"], 32, "params[0].blockHash"))
            if block is None:
                raise _invalid("params[0].blockHash: unknown block")
            start = end = block.number
        else:
            start = self._block_number(query.get("fromBlock", "latest"), "params[0].fromBlock")
            end = self._block_number(query.get("toBlock", "latest"), "params[0].toBlock")
            if start > end:
                raise _invalid(f"params[0]: fromBlock {start} is after toBlock {end}")
            if end - start + 1 > MAX_LOG_RANGE:
                raise RpcError(LIMIT_EXCEEDED, f"query exceeds max block range {MAX_LOG_RANGE}")
        addresses = _addresses(query.get("address"))
        topics = _topics(query.get("topics"))
        found: list[str] = []
        for number in range(start, min(end, self.chain.head.number) + 1):
            block = self.chain.blocks[number]
            for tx in block.transactions:
                for log in tx.logs:
                    if addresses is not None and log.address not in addresses:
                        continue
                    if any(
                        wanted is not None and (i >= len(log.topics) or log.topics[i] not in wanted)
                        for i, wanted in enumerate(topics)
                    ):
                        continue
                    found.append(log_json(block, tx, log))
        return ("[" + ",".join(found) + "]").encode()

    # -- parameters -----------------------------------------------------------------------------------------

    def _block_number(self, value: object, name: str) -> int:
        if isinstance(value, str) and value.startswith("0x"):
            return _quantity(value, name, _BLOCK_NUMBER)
        head = self.chain.head.number
        tags = {
            "latest": head,
            "pending": head,
            "earliest": 0,
            "safe": max(0, head - SAFE_DEPTH),
            "finalized": max(0, head - FINALIZED_DEPTH),
        }
        if isinstance(value, str) and value in tags:
            return tags[value]
        return _quantity(value, name, _BLOCK_NUMBER)

    def _block(self, value: object, name: str) -> Block | None:
        """A block named by number, tag or hash (eth_getBlockReceipts takes any of them)."""
        if isinstance(value, str) and len(value) == 66:
            return self.chain.block_by_hash(_bytes(value, 32, name))
        return self.chain.block(self._block_number(value, name))


def _text(value: str) -> bytes:
    return json.dumps(value).encode()


def _error_bytes(request_id: object, code: int, message: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}).encode()


def _arity(params: list[Any], least: int, most: int) -> None:
    if not least <= len(params) <= most:
        expected = str(least) if least == most else f"{least} to {most}"
        raise _invalid(f"expected {expected} params, got {len(params)}")


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be a boolean (include full transactions)")
    return value


def _quantity(value: object, name: str, what: str) -> int:
    if isinstance(value, str) and value.startswith("0x") and 2 < len(value) <= 18:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise _invalid(f"{name} must be {what}, got {json.dumps(value)}")


def _bytes(value: object, size: int, name: str) -> bytes:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 2 + 2 * size:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise _invalid(f"{name} must be 0x and {2 * size} hex digits, got {json.dumps(value)}")


def _addresses(value: object) -> set[bytes] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {_bytes(value, 20, "params[0].address")}
    if isinstance(value, list):
        return {_bytes(item, 20, f"params[0].address[{i}]") for i, item in enumerate(value)}
    raise _invalid("params[0].address must be an address or a list of addresses")


def _topics(value: object) -> list[set[bytes] | None]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 4:
        raise _invalid("params[0].topics must be a list of at most 4 positions")
    topics: list[set[bytes] | None] = []
    for i, position in enumerate(value):
        name = f"params[0].topics[{i}]"
        if position is None:
            topics.append(None)
        elif isinstance(position, str):
            topics.append({_bytes(position, 32, name)})
        elif isinstance(position, list):
            topics.append({_bytes(item, 32, f"{name}[{j}]") for j, item in enumerate(position)})
        else:
            raise _invalid(f"{name} must be null, a topic or a list of topics")
    return topics
