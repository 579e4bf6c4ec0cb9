"""`cryo_ingest`: extract the input event's block range with cryo into the versioned Parquet location (SPEC §10).

`config: {datatype: blocks | transactions | logs, rpc_url?, max_concurrent_requests?}` (`CryoIngestConfig`, checked
at deploy). The range is the input
event's `scope.range` (range manifests, e.g. from `range_aggregator`); the RPC is `config.rpc_url`, else the
worker-pool slot's `RPC_URL`, and either may name slot variables as `${NAME}` (an API key from `secret_env`).

cryo writes one file for the whole range into a scratch folder under the working directory; the file is checked
(every block of the range for `blocks`, no block outside it for the others) and only then handed to the
wrapper, which puts it atomically at `{start}_{end}.parquet` of the output's version (a re-run replaces it) and
emits the range's data event with its row count. A failed or malformed extraction stores nothing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import string
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trace_core.contracts.events import BlockRange
from trace_core.dag.operators import CryoIngestConfig
from worker.operators import EventLike, OperatorContext, OperatorError, operator_config

# cryo retries a failed request itself (default 10 times from 500 ms); a few quick ones cover a hiccup, and a
# persistent failure comes back to the dispatcher, whose retries have backoff and a limit the job sets
CRYO_RETRIES = 2
CRYO_BACKOFF_MS = 200
PROBE_TIMEOUT_S = 10


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    config = operator_config(ctx, CryoIngestConfig)
    span = _input_range(ctx)
    rpc_url = _rpc_url(config.rpc_url, ctx.env)
    _probe(rpc_url, span)
    scratch = Path.cwd() / f"cryo-{uuid.uuid4().hex}"
    try:
        path = _extract(config.datatype, span, rpc_url, scratch, config.max_concurrent_requests)
        _check(path, config.datatype, span, rpc_url)
        ctx.write_file(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def _input_range(ctx: OperatorContext) -> BlockRange:
    event = ctx.task.input_event
    if event is None:
        raise OperatorError(
            "cryo_ingest runs on input events that carry a block range; it cannot be a source", retryable=False
        )
    if event.scope.range is None:
        raise OperatorError(
            f"the input event's scope has no range ({event.scope.key}); cryo_ingest consumes range manifests, "
            "e.g. from range_aggregator",
            retryable=False,
        )
    return event.scope.range


def _rpc_url(configured: str | None, env: Mapping[str, str]) -> str:
    """config.rpc_url, else the slot's RPC_URL, with `${NAME}` taken from the slot's environment."""
    where = "config.rpc_url" if configured else "the worker-pool slot's RPC_URL"
    template = configured or env.get("RPC_URL")
    if not template:
        raise OperatorError(
            "no RPC to extract from: set config.rpc_url, or RPC_URL in the env of the job's worker_pool slots",
            retryable=False,
        )
    try:
        url = string.Template(template).substitute(env)
    except (KeyError, ValueError) as error:
        raise OperatorError(f"{where} names a variable the slot's env does not set: {error}", retryable=False) from None
    if urlsplit(url).scheme not in {"http", "https"}:
        raise OperatorError(f"{where} must be an http(s) URL, got {_redacted(url)}", retryable=False)
    return url


def _redacted(url: str) -> str:
    """The URL without path, query or credentials: providers put API keys there, and errors are shown to users."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    hidden = "/…" if (parts.path.strip("/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


@functools.cache
def _probe_client() -> httpx.Client:
    """One client per operator child, kept across its tasks: a new one builds a TLS context from the system's CA
    bundle (~20 ms of CPU), which a backfill of many short ranges paid once per range."""
    return httpx.Client(timeout=PROBE_TIMEOUT_S)


def _probe(url: str, span: BlockRange) -> None:
    """Ask the RPC for the range's last block first: cryo reports a dead or garbled RPC only as "failed", or
    writes rows of nulls; this names what is wrong. Every failure here may pass, so they are retryable."""
    shown = _redacted(url)
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [hex(span.end), False]}
    try:
        response = _probe_client().post(url, json=call)
    except httpx.HTTPError as error:
        raise OperatorError(f"the RPC at {shown} cannot be reached: {error or type(error).__name__}") from None
    if response.status_code != 200:
        raise OperatorError(f"the RPC at {shown} answered HTTP {response.status_code}: {response.text[:200]!r}")
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not ({"result", "error"} & set(answer)):
        raise OperatorError(
            f"the RPC at {shown} answered eth_getBlockByNumber with something that is not JSON-RPC: "
            f"{response.text[:200]!r}"
        )
    if "error" in answer:
        raise OperatorError(f"the RPC at {shown} refused eth_getBlockByNumber({span.end}): {answer['error']}")
    block = answer["result"]
    if block is None:
        raise OperatorError(f"block {span.end} is not on the chain of the RPC at {shown} yet")
    if not isinstance(block, dict) or block.get("number") != hex(span.end) or not isinstance(block.get("hash"), str):
        raise OperatorError(
            f"the RPC at {shown} answered eth_getBlockByNumber({span.end}) with a malformed block: "
            f"{json.dumps(block)[:200]}"
        )


def _extract(datatype: str, span: BlockRange, url: str, scratch: Path, concurrency: int) -> Path:
    """Run cryo for the range (one chunk, so one file) and return the file it wrote."""
    import cryo

    shown = _redacted(url)
    try:
        asyncio.run(
            cryo.async_freeze(
                datatype,
                blocks=[f"{span.start}:{span.end + 1}"],  # cryo's end is exclusive
                chunk_size=span.end - span.start + 1,
                rpc=url,
                output_dir=str(scratch),
                max_concurrent_requests=concurrency,
                max_retries=CRYO_RETRIES,
                initial_backoff=CRYO_BACKOFF_MS,
                verbose=False,
            )
        )
    except Exception as error:  # cryo raises bare exceptions ("failed") for RPC and decoding errors alike
        raise OperatorError(
            f"cryo failed extracting {datatype} {span.start}..{span.end} from {shown}: {error}"
        ) from None
    errored = [path for report in scratch.glob(".cryo/reports/*.json") for path in _errored_paths(report)]
    files = sorted(scratch.glob("*.parquet"))
    if errored or len(files) != 1:
        raise OperatorError(
            f"cryo could not extract {datatype} {span.start}..{span.end} from {shown}: the RPC's answers did not "
            f"decode ({len(errored)} chunk(s) errored, {len(files)} file(s) written)"
        )
    return files[0]


def _errored_paths(report: Path) -> list[str]:
    try:
        paths: list[str] = json.loads(report.read_text())["results"]["errored_paths"]
    except (ValueError, KeyError, TypeError):
        return [str(report)]
    return paths


def _check(path: Path, datatype: str, span: BlockRange, url: str) -> None:
    """Refuse rows that cannot be the range: cryo turns answers missing their fields into rows of nulls."""
    numbers = pq.read_table(path, columns=["block_number"]).column("block_number")
    problem = None
    if numbers.null_count:
        problem = f"{numbers.null_count} row(s) without a block number"
    elif datatype == "blocks" and sorted(numbers.to_pylist()) != list(range(span.start, span.end + 1)):
        problem = f"{len(numbers)} block row(s) that are not exactly blocks {span.start}..{span.end}"
    elif len(numbers) and (pc.min(numbers).as_py() < span.start or pc.max(numbers).as_py() > span.end):
        problem = f"rows of blocks outside {span.start}..{span.end}"
    if problem:
        raise OperatorError(
            f"the RPC at {_redacted(url)} gave malformed {datatype} for {span.start}..{span.end}: cryo wrote {problem}"
        )
