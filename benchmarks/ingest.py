"""`make bench-ingest`: backfill of a devchain range (blocks and transactions) through Trace's pipeline
block_follower -> range_aggregator -> cryo_ingest (a worker pool of 4 slots), beside cryo alone on the same
range and RPC, in one run (see BENCHMARKS.md).

cryo alone does the same extraction the pipeline does: the `blocks` and the `transactions` datasets, each its own
freeze (as the two cryo_ingest jobs run them), in ranges of `--range-size`, at the same total concurrency (4
chunks, 16 requests each). Also reported: cryo's combined freeze of both datasets in one pass, which fetches each
block once (2 requests per block instead of 3), and devchain's request rate and CPU per request in each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq

from benchmarks.dispatch import REPO, LiveStack, _default_server, _free_port, _prepare
from benchmarks.peers import _fresh_database
from devchain import launch

SLOTS = 4
REQUESTS_PER_CHUNK = 16
DATASETS = ("blocks", "transactions")


def pipeline_dag(rpc_url: str, blocks: int, range_size: int, *, follow: bool = True) -> str:
    """The benchmark's DAG: block_follower -> range_aggregator (or, with `follow=False`, a source of the same range
    manifests) -> cryo_ingest for blocks and for transactions, on a worker pool of SLOTS slots."""
    slots = "\n".join(f'    - env: {{RPC_URL: "{rpc_url}"}}' for _ in range(SLOTS))
    if follow:
        ranges = f"""
  follower:
    activation: source
    operator: block_follower
    config: {{rpc_url: "{rpc_url}", confirmations: 0, start_block: 0, end_block: {blocks - 1},
              poll_interval_s: 0.05, batch_blocks: 1000}}
  ranges:
    operator: range_aggregator
    inputs: [{{from: {{job: follower}}}}]
    config: {{range_size: {range_size}}}"""
    else:
        ranges = f"""
  ranges:
    activation: source
    operator: python
    config: {{function: "benchmarks.ingest_udfs:range_manifests", blocks: {blocks}, range_size: {range_size}}}"""
    extract = "".join(
        f"""
  {datatype}:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges}}}}]
    execution_strategy: PerPartition
    worker_pool: rpc
    scaling: {{max_concurrency: {SLOTS}}}
    timeout_s: 600
    max_attempts: 3
    config: {{datatype: {datatype}, max_concurrent_requests: {REQUESTS_PER_CHUNK}}}
    outputs: [{{storage: s3, format: parquet}}]"""
        for datatype in DATASETS
    )
    return f"""
dag: ingest
worker_pools:
  rpc:
{slots}
jobs:{ranges}{extract}
publish:
  - {{job: blocks, dataset: bench_blocks}}
  - {{job: transactions, dataset: bench_transactions}}
"""


class Devchain:
    """The devchain process of the run, and what it served in a phase."""

    def __init__(self, blocks: int, seed: int, logs: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.log = logs / "devchain.log"
        with self.log.open("wb") as out:
            argv = launch.command(int(self.url.rsplit(":", 1)[1]), seed, initial_blocks=blocks)
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        launch.wait_ready(self.url, self.process, self.log, timeout_s=600)

    def counters(self) -> tuple[int, float]:
        """(HTTP requests served, CPU seconds used) so far."""
        requests = int(httpx.get(f"{self.url}/control/stats", timeout=10).json()["http_requests"])
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return requests, (int(fields[11]) + int(fields[12])) / ticks

    async def measure(self, phase: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, float]]:
        """Run `phase`; its result and its wall time, devchain's requests per second and CPU µs per request."""
        requests_before, cpu_before = self.counters()
        started = time.perf_counter()
        result = await phase()
        elapsed = time.perf_counter() - started
        requests_after, cpu_after = self.counters()
        requests = requests_after - requests_before
        return result, {
            "seconds": elapsed,
            "requests": requests,
            "requests_per_s": requests / elapsed,
            "cpu_us_per_request": (cpu_after - cpu_before) / max(requests, 1) * 1e6,
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _freeze(datatypes: list[str], rpc_url: str, blocks: int, range_size: int, chunks: int, out: Path) -> int:
    """cryo over blocks 0..blocks-1 in chunks of `range_size`; the rows it wrote."""
    import cryo

    asyncio.run(
        cryo.async_freeze(
            datatypes,
            blocks=[f"0:{blocks}"],
            rpc=rpc_url,
            output_dir=str(out),
            chunk_size=range_size,
            max_concurrent_chunks=chunks,
            max_concurrent_requests=chunks * REQUESTS_PER_CHUNK,
            verbose=False,
        )
    )
    return sum(pq.read_metadata(path).num_rows for path in out.glob("*.parquet"))


async def cryo_alone(chain: Devchain, blocks: int, range_size: int, scratch: Path) -> dict[str, Any]:
    async def separate() -> int:
        # the pipeline's work: one freeze per dataset, the 4 slots' concurrency split between them
        runs = [
            asyncio.to_thread(_freeze, [d], chain.url, blocks, range_size, SLOTS // 2, scratch / f"separate-{d}")
            for d in DATASETS
        ]
        return sum(await asyncio.gather(*runs))

    async def combined() -> int:
        return await asyncio.to_thread(_freeze, list(DATASETS), chain.url, blocks, range_size, SLOTS, scratch / "both")

    rows, phase = await chain.measure(separate)
    combined_rows, combined_phase = await chain.measure(combined)
    assert combined_rows == rows, f"cryo wrote {rows} rows separately but {combined_rows} combined"
    return {"rows": rows, "separate": phase, "combined": combined_phase}


async def _scalar(dsn: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(query.encode())
        row = await cursor.fetchone()
    return row[0] if row else None


async def _wait_pipeline(dsn: str, expected_tasks: int, timeout_s: float) -> bool:
    """Wait for every extraction task; False when `timeout_s` ran out first (the run is then measured as far as
    it got: a backfill too slow to finish still gets a rate). One connection polls: a new one every poll cost the
    machine the pipeline runs on a backend start each time."""
    deadline = time.monotonic() + timeout_s
    done_query = """SELECT count(*) FILTER (WHERE t.status = 'Completed'), count(*) FILTER (WHERE t.status = 'Failed')
                    FROM jobs j JOIN tasks t USING (job_id) WHERE j.operator = 'cryo_ingest'"""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            cursor = await conn.execute(done_query.encode())
            row = await cursor.fetchone()
            completed, failed = (int(row[0]), int(row[1])) if row else (0, 0)
            if failed:
                error = await _scalar(dsn, "SELECT last_error FROM tasks WHERE status = 'Failed' LIMIT 1")
                raise RuntimeError(f"{failed} extraction task(s) failed: {error}")
            if completed >= expected_tasks:
                return True
            await asyncio.sleep(0.25)
    return False


async def trace_pipeline(
    chain: Devchain,
    admin_dsn: str,
    blocks: int,
    range_size: int,
    logs: Path,
    scratch: Path,
    timeout_s: float,
    *,
    follow: bool = True,
) -> dict[str, Any]:
    ranges = -(-blocks // range_size)
    async with _fresh_database(admin_dsn, "bench_ingest") as dsn:
        token = await _prepare(dsn)
        # follower + aggregator + 4 extractions at once, with room to spare
        env = {"TRACE_HOME": str(scratch), "TRACE_UDF_PATH": str(REPO)}
        stack = LiveStack(dsn, workers=1, concurrency=SLOTS + 4, logs=logs, extra_env=env)
        try:
            await stack.start_dispatcher()
            await stack.start_workers()

            async def run() -> bool:
                async with httpx.AsyncClient(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}) as api:
                    dag = pipeline_dag(chain.url, blocks, range_size, follow=follow)
                    deployed = await api.post("/v1/dags", content=dag)
                    assert deployed.status_code == 201, deployed.text
                return await _wait_pipeline(dsn, len(DATASETS) * ranges, timeout_s)

            clock = await _scalar(dsn, "SELECT now()")
            finished, phase = await chain.measure(run)
            # blocks extracted by both jobs: the smaller of their sums of completed ranges
            blocks_done = await _scalar(
                dsn,
                """SELECT coalesce(min(n), 0) FROM (
                       SELECT coalesce(sum(e.range_end - e.range_start + 1) FILTER (WHERE t.status = 'Completed'), 0)
                              AS n
                       FROM jobs j LEFT JOIN tasks t USING (job_id) LEFT JOIN events e ON e.event_id = t.input_event_id
                       WHERE j.operator = 'cryo_ingest' GROUP BY j.job_id) per_job""",
            )
            rows = await _scalar(
                dsn,
                """SELECT coalesce(sum((e.payload->>'rows')::bigint), 0) FROM events e
                   JOIN tasks t ON t.task_id = e.producer_task_id JOIN jobs j USING (job_id)
                   WHERE j.operator = 'cryo_ingest' AND e.kind = 'data'""",
            )
            stages = {}
            for job in ("follower", "ranges", "blocks", "transactions") if follow else ("ranges", *DATASETS):
                last = await _scalar(
                    dsn,
                    f"""SELECT extract(epoch FROM max(e.created_at) - '{clock.isoformat()}'::timestamptz)
                        FROM events e JOIN tasks t ON t.task_id = e.producer_task_id
                        JOIN jobs j USING (job_id) WHERE j.job_name = '{job}'""",
                )
                stages[job] = float(last or 0)
            aggregator_tasks = await _scalar(
                dsn, "SELECT count(*) FROM tasks t JOIN jobs j USING (job_id) WHERE j.job_name = 'ranges'"
            )
        finally:
            stack.stop()
    return {
        "rows": int(rows),
        "blocks": int(blocks_done),
        "finished": finished,
        "phase": phase,
        "last_event_s": stages,
        "aggregator_tasks": int(aggregator_tasks),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("TRACE_DATABASE_URL", ""))
    parser.add_argument("--blocks", type=int, default=50_000)
    parser.add_argument("--range-size", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--logs", type=Path, default=REPO / ".trace" / "bench-logs")
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    dsn = args.dsn or await _default_server()

    chain = Devchain(args.blocks, args.seed, args.logs)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
            alone = await cryo_alone(chain, args.blocks, args.range_size, Path(scratch) / "cryo")
            extract = await trace_pipeline(
                chain,
                dsn,
                args.blocks,
                args.range_size,
                args.logs,
                Path(scratch) / "extract",
                args.timeout_s,
                follow=False,
            )
            trace = await trace_pipeline(
                chain, dsn, args.blocks, args.range_size, args.logs, Path(scratch) / "trace", args.timeout_s
            )
    finally:
        chain.stop()

    for phase in (trace, extract):
        if phase["finished"] and phase["rows"] != alone["rows"]:
            raise RuntimeError(f"the pipeline wrote {phase['rows']} rows, cryo alone {alone['rows']}")
    trace_s, extract_s = trace["phase"]["seconds"], extract["phase"]["seconds"]
    separate_s, combined_s = alone["separate"]["seconds"], alone["combined"]["seconds"]
    cryo_rate = args.blocks / separate_s
    trace_rate, extract_rate = trace["blocks"] / trace_s, extract["blocks"] / extract_s
    result = {
        "blocks": args.blocks,
        "rows": trace["rows"],
        "trace_finished": trace["finished"],  # false: --timeout-s ran out; the rates cover what was done
        "trace_blocks_per_s": trace_rate,
        "trace_rows_per_s": trace["rows"] / trace_s,
        "cryo_alone_blocks_per_s": cryo_rate,
        "ratio_to_cryo": trace_rate / cryo_rate,
        "cryo_combined_blocks_per_s": args.blocks / combined_s,
        "ratio_to_cryo_combined": trace_rate * combined_s / args.blocks,
        "trace_extract_finished": extract["finished"],
        "trace_extract_blocks_per_s": extract_rate,
        "trace_extract_ratio_to_cryo": extract_rate / cryo_rate,
        "devchain_requests_per_s_cryo_alone": alone["separate"]["requests_per_s"],
        "devchain_requests_per_s_combined": alone["combined"]["requests_per_s"],
        "devchain_requests_per_s_trace": trace["phase"]["requests_per_s"],
        "devchain_cpu_us_per_request": alone["separate"]["cpu_us_per_request"],
        "trace_last_event_s": trace["last_event_s"],
        "aggregator_tasks": trace["aggregator_tasks"],
    }
    rows = [
        ("blocks (rows: blocks + transactions)", f"{args.blocks:,} ({alone['rows']:,} rows)"),
        ("Trace blocks extracted (finished?)", f"{trace['blocks']:,} ({trace['finished']})"),
        ("Trace pipeline", f"{result['trace_blocks_per_s']:,.0f} blocks/s, {result['trace_rows_per_s']:,.0f} rows/s"),
        (
            "Trace extraction only (manifests given, no follower/aggregator)",
            f"{result['trace_extract_blocks_per_s']:,.0f} blocks/s "
            f"({result['trace_extract_ratio_to_cryo']:.2f} of cryo alone)",
        ),
        ("cryo alone, one freeze per dataset", f"{result['cryo_alone_blocks_per_s']:,.0f} blocks/s"),
        ("cryo alone, both datasets in one freeze", f"{result['cryo_combined_blocks_per_s']:,.0f} blocks/s"),
        (
            "Trace / cryo alone (same freezes / combined)",
            f"{result['ratio_to_cryo']:.2f} / {result['ratio_to_cryo_combined']:.2f}",
        ),
        (
            "devchain requests/s: cryo alone / combined / Trace",
            f"{result['devchain_requests_per_s_cryo_alone']:,.0f} / {result['devchain_requests_per_s_combined']:,.0f}"
            f" / {result['devchain_requests_per_s_trace']:,.0f}",
        ),
        ("devchain CPU per request", f"{result['devchain_cpu_us_per_request']:.0f} µs"),
        (
            "Trace: last event of follower / ranges / blocks / transactions",
            " / ".join(f"{s:.1f}" for s in trace["last_event_s"].values()) + " s",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
