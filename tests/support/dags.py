"""DAG documents the suites share."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# The DAG of SPEC §3: every rule of the spec holds for it, and the bad-input tests are edits of it.
VALID_DAG = (EXAMPLES / "eth_mainnet.yaml").read_text()
