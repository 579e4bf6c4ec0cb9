"""Starting a devchain process from another program (the dev stack, the ingest benchmark, the tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class DevchainStartError(RuntimeError):
    """The devchain process exited or did not answer in time; the message has its log's tail."""


def command(
    port: int, seed: int, *, initial_blocks: int = 0, block_time_ms: int | None = None, host: str = "127.0.0.1"
) -> list[str]:
    """The argv that runs devchain with this interpreter."""
    argv = [sys.executable, "-m", "devchain", "--host", host, "--port", str(port), "--seed", str(seed)]
    argv += ["--initial-blocks", str(initial_blocks)]
    if block_time_ms is not None:
        argv += ["--block-time-ms", str(block_time_ms)]
    return argv


def head(url: str, timeout_s: float = 2) -> dict[str, Any]:
    """`GET /control/head` of the devchain at `url`."""
    with urllib.request.urlopen(f"{url}/control/head", timeout=timeout_s) as answer:  # noqa: S310 - our own URL
        result: dict[str, Any] = json.loads(answer.read())
    return result


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 120) -> dict[str, Any]:
    """Wait until the devchain at `url` answers (generating `--initial-blocks` takes ~130 µs a block); its head."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise DevchainStartError(f"devchain exited with code {process.returncode} while starting:\n{tail}")
        try:
            return head(url)
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise DevchainStartError(f"devchain did not answer at {url} within {timeout_s:.0f}s; see {log}")
