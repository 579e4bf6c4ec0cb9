"""User functions of the chain suites (`operator: python`), imported by workers as `tests.chain.udfs:NAME`.

`scripted_chain` stands in for block_follower where a test needs a reorg at an exact moment: it emits the
events block_follower emits (per-block data events, then an invalidation and the new branch), and writes the
chain it is on to `dir/chain.json`, which `range_rows` and `old_branch_marks` read as an extractor reads a node.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GO_TIMEOUT_S = 120


def _publish(directory: Path, chain: dict[int, str]) -> None:
    staging = directory / "chain.json.tmp"
    staging.write_text(json.dumps(chain))
    os.replace(staging, directory / "chain.json")


def _block(number: int, block_hash: str, epoch: int) -> dict[str, Any]:
    return {
        "scope": {"cursor": f"{epoch}:{block_hash}", "range": {"start": number, "end": number}},
        "payload": {"number": number, "hash": block_hash},
    }


def scripted_chain(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Branch a for blocks 0..7; once `dir/go` exists, a reorg replacing 4..7 and branch b for 4..11."""
    directory = Path(config["dir"])
    first = {n: f"a{n}" for n in range(8)}
    _publish(directory, first)
    for n in range(8):
        yield _block(n, first[n], 0)
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not (directory / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never said go")
        time.sleep(0.05)
    second = {**{n: first[n] for n in range(4)}, **{n: f"b{n}" for n in range(4, 12)}}
    _publish(directory, second)
    yield {
        "kind": "invalidation",
        "scope": {"cursor": "reorg:1", "range": {"start": 4, "end": 7}},
        "payload": {"fork_block": 3, "depth": 4},
    }
    for n in range(4, 12):
        yield _block(n, second[n], 1)


def _chain_rows(event: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    chain = {int(n): h for n, h in json.loads(Path(config["dir"], "chain.json").read_text()).items()}
    span = event["scope"]["range"]
    return [{"number": n, "hash": chain[n]} for n in range(span["start"], span["end"] + 1)]


def range_rows(event: dict[str, Any], config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The blocks of the input range as the chain has them now, to output 0 and output 1."""
    rows = _chain_rows(event, config)
    yield {"rows": rows, "output": 0}
    yield {"rows": rows, "output": 1}


def old_branch_marks(event: dict[str, Any], config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Rows for the blocks of the range still on branch a; nothing at all written when there are none."""
    rows = [row for row in _chain_rows(event, config) if row["hash"].startswith("a")]
    if rows:
        yield {"rows": rows}


def numbered_blocks(event: dict[str, Any] | None, config: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Per-block events for blocks `first..last`, as block_follower emits them (hash `h<n>`)."""
    for n in range(config["first"], config["last"] + 1):
        yield {"scope": {"cursor": f"0:h{n}", "range": {"start": n, "end": n}}, "payload": {"number": n}}
