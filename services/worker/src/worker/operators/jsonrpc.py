"""A small Ethereum JSON-RPC client for operators that read a chain (block_follower).

Every answer is checked: a node that is down, answers HTTP errors, or answers something that is not the
JSON-RPC the call expects gives an `RpcError` that says which call failed and why, after `retries` more tries
with backoff. Messages name the node by scheme, host and port only: RPC URLs often carry an API key.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from worker.operators import OperatorError

_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_QUANTITY = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
BACKOFF_S = 0.5
MAX_BODY_CHARS = 200


class RpcError(OperatorError):
    """The node could not be reached or answered something unusable (retryable: nodes recover)."""


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "hash": self.hash, "parent_hash": self.parent_hash, "timestamp": self.timestamp}


def redact(url: str) -> str:
    """`scheme://host:port` of `url`: enough to tell which node, without a key in its path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


class JsonRpc:
    def __init__(self, url: str, timeout_s: float, retries: int) -> None:
        self.url = url
        self.node = redact(url)
        self.retries = retries
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def block_number(self) -> int:
        [answer] = self._calls([("eth_blockNumber", [])])
        return _quantity(answer, f"{self.node}: eth_blockNumber")

    def blocks(self, numbers: list[int]) -> list[BlockHeader | None]:
        """The headers of `numbers` in one batch; None where the node has no such block (past its head)."""
        if not numbers:
            return []
        answers = self._calls([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return [_header(answer, number, self.node) for answer, number in zip(answers, numbers, strict=True)]

    def _calls(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        for attempt in range(self.retries + 1):
            try:
                return self._once(calls)
            except RpcError:
                if attempt == self.retries:
                    raise
                time.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    def _once(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        what = f"{self.node}: {calls[0][0]}"
        body = [{"jsonrpc": "2.0", "id": i, "method": name, "params": params} for i, (name, params) in enumerate(calls)]
        try:
            response = self._http.post(self.url, json=body if len(body) > 1 else body[0])
        except httpx.HTTPError as error:
            raise RpcError(f"{what}: cannot reach the node: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise RpcError(f"{what} answered HTTP {response.status_code}: {_excerpt(response.text)}")
        try:
            document = response.json()
        except ValueError:
            raise RpcError(f"{what} answered something that is not JSON: {_excerpt(response.text)}") from None
        replies = document if isinstance(document, list) else [document]
        by_id: dict[Any, Any] = {}
        for reply in replies:
            if not isinstance(reply, dict) or "id" not in reply or ("result" not in reply and "error" not in reply):
                raise RpcError(f"{what} answered something that is not JSON-RPC: {_excerpt(response.text)}")
            by_id[reply["id"]] = reply
        results = []
        for index, (name, params) in enumerate(calls):
            reply = by_id.get(index)
            if reply is None:
                raise RpcError(f"{self.node}: {name} got no answer for request {index} of a batch of {len(calls)}")
            if reply.get("error") is not None:
                failure = reply["error"]
                detail = failure.get("message", failure) if isinstance(failure, dict) else failure
                raise RpcError(f"{self.node}: {name}{tuple(params)} failed: {_excerpt(str(detail))}")
            results.append(reply["result"])
        return results


def _excerpt(text: str) -> str:
    return repr(text[:MAX_BODY_CHARS] + ("…" if len(text) > MAX_BODY_CHARS else ""))


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise RpcError(f"{what} answered {_excerpt(repr(value))}, not a hex quantity")
    return int(value, 16)


def _header(answer: Any, number: int, node: str) -> BlockHeader | None:
    what = f"{node}: eth_getBlockByNumber({hex(number)})"
    if answer is None:
        return None
    if not isinstance(answer, dict):
        raise RpcError(f"{what} answered {_excerpt(repr(answer))}, not a block")
    for field in ("hash", "parentHash"):
        if not isinstance(answer.get(field), str) or not _HASH.match(answer[field]):
            raise RpcError(f"{what} answered a block whose {field} is {_excerpt(repr(answer.get(field)))}")
    header = BlockHeader(
        number=_quantity(answer.get("number"), f"{what} number"),
        hash=answer["hash"].lower(),
        parent_hash=answer["parentHash"].lower(),
        timestamp=_quantity(answer.get("timestamp"), f"{what} timestamp"),
    )
    if header.number != number:
        raise RpcError(f"{what} answered block {header.number}")
    return header
