"""devchain's requests: JSON-RPC on `POST /`, the control API under `/control/`, and the optional block-time miner.

`Devchain.handle(method, path, body)` answers one request synchronously (`server.py` speaks HTTP): cryo sends
thousands of small requests a second, and routing two paths needs no framework. Control errors answer 4xx with a
JSON `error` naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from devchain.chain import Block, Chain, ChainError
from devchain.rpc import Rpc

MAX_MINE = 100_000
MAX_BODY_BYTES = 8 * 1024 * 1024


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def head_json(chain: Chain) -> dict[str, Any]:
    head: Block = chain.head
    return {
        "number": head.number,
        "hash": "0x" + head.hash.hex(),
        "parent_hash": "0x" + head.parent_hash.hex(),
        "timestamp": head.timestamp,
        "reorgs": chain.reorgs,
    }


class Devchain:
    """The server's state: the chain, its RPC front, and the miner that adds a block every `block_time_ms`."""

    def __init__(self, seed: int, chain_id: int, block_time_ms: int | None = None) -> None:
        self.chain = Chain(seed)
        self.rpc = Rpc(self.chain, chain_id)
        self.block_time_ms = block_time_ms
        self.started = time.monotonic()
        self._miner: asyncio.Task[None] | None = None

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """The status and JSON body answering one HTTP request."""
        self.rpc.stats.http_requests += 1
        try:
            if path == "/":
                if method != "POST":
                    raise ControlError(405, "JSON-RPC takes POST /")
                answer = self.rpc.answer(body)
                return 200, answer if answer is not None else b""
            return 200, json.dumps(self._control(method, path, body)).encode()
        except ControlError as error:
            return error.status, json.dumps({"error": error.message}).encode()

    def _control(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        routes: dict[tuple[str, str], Callable[[bytes], dict[str, Any]]] = {
            ("GET", "/control/head"): lambda _: head_json(self.chain),
            ("GET", "/control/stats"): lambda _: self._stats(),
            ("POST", "/control/mine"): self._mine,
            ("POST", "/control/reorg"): self._reorg,
            ("POST", "/control/mining"): self._mining,
        }
        route = routes.get((method, path))
        if route is None:
            if any(known == path for _, known in routes):
                raise ControlError(405, f"{path} does not take {method}")
            raise ControlError(404, f"no such path {path}; JSON-RPC is POST /, control is under /control/")
        return route(body)

    def _mine(self, body: bytes) -> dict[str, Any]:
        blocks = _field(_object(body), "blocks", 1, MAX_MINE)
        self.chain.mine(blocks)
        return head_json(self.chain)

    def _reorg(self, body: bytes) -> dict[str, Any]:
        depth = _field(_object(body), "depth", 1, None)
        first = self.chain.head.number - depth + 1
        try:
            self.chain.reorg(depth)
        except ChainError as error:
            raise ControlError(400, str(error)) from None
        return {**head_json(self.chain), "replaced": {"start": first, "end": first + depth - 1}}

    def _mining(self, body: bytes) -> dict[str, Any]:
        """Start (`block_time_ms: T`) or stop (`block_time_ms: null`) mining one block every T ms."""
        request = _object(body)
        if request.get("block_time_ms") is None and "block_time_ms" in request:
            self.block_time_ms = None
        else:
            self.block_time_ms = _field(request, "block_time_ms", 1, None)
        self._restart_miner()
        return {"block_time_ms": self.block_time_ms, **head_json(self.chain)}

    def _stats(self) -> dict[str, Any]:
        stats = self.rpc.stats
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "http_requests": stats.http_requests,
            "rpc_calls": stats.rpc_calls,
            "methods": dict(stats.methods),
            "head": self.chain.head.number,
            "block_time_ms": self.block_time_ms,
        }

    def _restart_miner(self) -> None:
        if self._miner is not None:
            self._miner.cancel()
            self._miner = None
        if self.block_time_ms is not None:
            self._miner = asyncio.get_running_loop().create_task(self._mine_every(self.block_time_ms / 1000))

    async def _mine_every(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + interval_s
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.chain.mine(1)
            due += interval_s

    def start_mining(self) -> None:
        """Mine every `block_time_ms` from now on, if set (call in the server's event loop)."""
        self._restart_miner()

    async def stop_mining(self) -> None:
        if self._miner is not None:
            self._miner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._miner
            self._miner = None


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as error:
        raise ControlError(400, f"the body is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ControlError(400, "the body must be a JSON object")
    return value


def _field(request: dict[str, Any], name: str, least: int, most: int | None) -> int:
    value = request.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < least or (most is not None and value > most):
        bound = f"between {least} and {most}" if most is not None else f">= {least}"
        raise ControlError(400, f"{name} must be an integer {bound}, got {json.dumps(value)}")
    return value
