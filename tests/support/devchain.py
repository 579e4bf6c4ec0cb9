"""A real devchain process on a free loopback port for tests, with a small JSON-RPC and control client.

Every suite that needs a chain uses this one helper (through the `devchain` fixture, or `running_devchain` for
other seeds and options).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from devchain import launch
from tests.support.stack import REPO, free_port


class RpcCallError(AssertionError):
    """A JSON-RPC call answered with an error object."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error}")
        self.code: int = error["code"]
        self.message: str = error["message"]


@dataclass
class Devchain:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    _ids: Iterator[int] = field(default_factory=lambda: count(1))

    def rpc(self, method: str, *params: Any) -> Any:
        """Call `method`; its result, or RpcCallError."""
        answer = self.post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if "error" in body:
            raise RpcCallError(method, body["error"])
        return body["result"]

    def post(self, body: Any, path: str = "/") -> httpx.Response:
        """POST a JSON body (a call, a batch, or anything at all) and return the raw answer."""
        content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
        return self._http.post(self.url + path, content=content, headers={"content-type": "application/json"})

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self._http.request(method, f"{self.url}/control/{path}", json=body)

    def _ok(self, answer: httpx.Response) -> dict[str, Any]:
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def head(self) -> dict[str, Any]:
        """{number, hash, parent_hash, timestamp, reorgs}"""
        return self._ok(self.control("GET", "head"))

    def mine(self, blocks: int = 1) -> dict[str, Any]:
        return self._ok(self.control("POST", "mine", {"blocks": blocks}))

    def reorg(self, depth: int) -> dict[str, Any]:
        """Replace the last `depth` blocks with `depth + 1` new ones; the answer has the `replaced` range."""
        return self._ok(self.control("POST", "reorg", {"depth": depth}))

    def mining(self, block_time_ms: int | None) -> dict[str, Any]:
        """Mine one block every `block_time_ms` (None stops)."""
        return self._ok(self.control("POST", "mining", {"block_time_ms": block_time_ms}))

    def stats(self) -> dict[str, Any]:
        return self._ok(self.control("GET", "stats"))

    def stop(self) -> None:
        self._http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_devchain(
    log_dir: Path, seed: int = 7, initial_blocks: int = 0, block_time_ms: int | None = None
) -> Iterator[Devchain]:
    """Start `python -m devchain` on a free loopback port; stop it afterwards."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"devchain-{port}.log"
    argv = launch.command(port, seed, initial_blocks=initial_blocks, block_time_ms=block_time_ms)
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    chain = Devchain(url=url, process=process, log=log)
    try:
        launch.wait_ready(url, process, log, timeout_s=60)
        yield chain
    finally:
        chain.stop()
