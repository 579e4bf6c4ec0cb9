"""Query benchmark (BENCHMARKS.md, "Query"): the same SQL over the same Parquet files and Postgres table, three
ways in one run: raw DuckDB in-process, the Query Service's engine in-process (check, pin, run, record), and the
Query Service over HTTP (uvicorn on loopback, a separate process). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
from psycopg.rows import dict_row
from tests.query.registry import Org, make_org
from tests.support.stack import REPO, free_port

from benchmarks.peers import _fresh_database
from query_service.metrics import Metrics
from query_service.service import QueryService
from trace_core.auth.repository import principal_by_token_hash
from trace_core.auth.tokens import hash_token
from trace_core.db.migrate import migrate_url
from trace_core.db.pool import create_pool
from trace_core.naming import DATA_SCHEMA
from trace_core.objectstore import LocalObjectStore
from trace_core.query import QueryEngine
from trace_core.query.engine import extension_file
from trace_core.settings import Settings

FILES = 10
ACCOUNTS = 10_000
QUERIES = {
    "point": "select * from transfers where block_number = 4242424",
    "agg": "select account_id % 16 as bucket, count(*) as n, sum(value) as total, avg(gas) as gas "
    "from transfers group by 1 order by 1",
    "join": "select a.label, count(*) as n, sum(t.value) as total from transfers t "
    "join accounts a on a.id = t.account_id group by a.label order by n desc limit 10",
}


def generate_parquet(org: Org, objects: Path, rows: int) -> float:
    """`rows` transfers in FILES files of one block range each, written by DuckDB; returns seconds taken."""
    started = time.perf_counter()
    per_file = rows // FILES
    writer = duckdb.connect()
    for index in range(FILES):
        start, end = index * per_file, (index + 1) * per_file - 1
        path = objects / org.parquet_key("transfers", start, end)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer.execute(
            f"""COPY (SELECT i AS block_number, (hash(i) % {ACCOUNTS})::BIGINT AS account_id,
                             (hash(i * 7) % 1000000) / 100.0 AS value, 21000 + i % 5000 AS gas
                      FROM range({start}, {end + 1}) t(i))
                TO '{path}' (FORMAT parquet)"""
        )
    writer.close()
    return time.perf_counter() - started


async def create_accounts(org: Org) -> None:
    await org.create_table("accounts", "id bigint PRIMARY KEY, label text", [])
    await org.db.execute(
        f"""INSERT INTO {DATA_SCHEMA}.{org.datasets["accounts"].table}
            SELECT i, 'label_' || (i % 100), '0_0' FROM generate_series(0, {ACCOUNTS - 1}) i"""
    )


def raw_duckdb(objects: Path, org: Org, dsn: str) -> duckdb.DuckDBPyConnection:
    """Plain DuckDB with the same views, settings and extensions, no lockdown: the baseline."""
    conn = duckdb.connect(config={"allow_unsigned_extensions": True})
    conn.execute(f"LOAD '{extension_file('postgres_scanner')}'")
    conn.execute("SET parquet_metadata_cache = true")
    conn.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
    folder = objects / org.parquet_key("transfers", 0, 0).rsplit("/", 1)[0]
    conn.execute(f"CREATE VIEW transfers AS SELECT * FROM read_parquet('{folder}/*.parquet')")
    conn.execute(f"CREATE VIEW accounts AS SELECT id, label FROM pg.{DATA_SCHEMA}.{org.datasets['accounts'].table}")
    return conn


async def compare(ways: Mapping[str, Callable[[], Awaitable[Any]]], repeat: int) -> dict[str, list[float]]:
    """Milliseconds per run of each way; the ways take turns, so a noisy neighbour slows all of them alike."""
    for run_once in ways.values():
        await run_once()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeat):
        for name, run_once in ways.items():
            started = time.perf_counter()
            await run_once()
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_http(dsn: str, objects: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "TRACE_DATABASE_URL": dsn,
        "TRACE_OBJECT_STORE": str(objects),
        "TRACE_QUERY_PORT": str(port),
        "TRACE_MIGRATE_ON_START": "false",
        "TRACE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "query_service"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the Query Service did not start")


async def run(admin_dsn: str, rows: int, repeat: dict[str, int]) -> dict[str, Any]:
    async with _fresh_database(admin_dsn, "bench_query") as dsn:
        await migrate_url(dsn)
        with tempfile.TemporaryDirectory(prefix="trace-bench-query-") as scratch:
            objects = Path(scratch)
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as db:
                org = await make_org(db, "bench")
                await org.publish("transfers", "s3")
                await org.publish("accounts", "postgres")
                await create_accounts(org)
                generated_s = generate_parquet(org, objects, rows)
                principal = await principal_by_token_hash(db, hash_token(org.admin["Authorization"].split()[1]))
                assert principal is not None

            raw = raw_duckdb(objects, org, dsn)
            settings = Settings(database_url=dsn, object_store=str(objects), migrate_on_start=False)
            pool = create_pool(settings, dsn, name="bench-query")
            await pool.open(wait=True)
            engine = QueryEngine(
                LocalObjectStore(objects), database_url=dsn, aws_region="us-east-1", aws_endpoint_url=None
            )
            service = QueryService(pool, engine, Metrics())
            process, url = start_http(dsn, objects)
            results: dict[str, dict[str, list[float]]] = {}
            try:
                async with httpx.AsyncClient(base_url=url, headers=org.admin, timeout=120) as client:
                    for name, sql in QUERIES.items():

                        async def raw_query(sql: str = sql) -> Any:
                            return await asyncio.to_thread(lambda: raw.cursor().execute(sql).to_arrow_table())

                        async def engine_query(sql: str = sql) -> Any:
                            return await service.run_interactive(principal, sql, max_rows=10_000, timeout_s=120)

                        async def http_query(sql: str = sql) -> Any:
                            response = await client.post("/v1/query", json={"sql": sql, "max_rows": 10_000})
                            response.raise_for_status()
                            return response

                        ways = {"raw": raw_query, "engine": engine_query, "http": http_query}
                        results[name] = await compare(ways, repeat[name])
            finally:
                process.terminate()
                process.wait(timeout=30)
                engine.close()
                await pool.close()
                raw.close()
    return {"rows": rows, "generated_s": generated_s, "results": results}


def report(outcome: dict[str, Any]) -> dict[str, Any]:
    results = outcome["results"]
    print(
        f"Query benchmark: {outcome['rows']:,} Parquet rows in {FILES} files (generated in "
        f"{outcome['generated_s']:.1f} s), {ACCOUNTS:,} Postgres rows"
    )
    print(f"{'query':<6} {'way':<8} {'p50 ms':>9} {'p99 ms':>9} {'vs raw':>7}")
    for name, ways in results.items():
        raw_p50 = p(ways["raw"], 0.5)
        for way, samples in ways.items():
            print(f"{name:<6} {way:<8} {p(samples, 0.5):9.2f} {p(samples, 0.99):9.2f} {p(samples, 0.5) / raw_p50:7.2f}")
    figures: dict[str, Any] = {
        "raw_duckdb_agg_ms": round(p(results["agg"]["raw"], 0.5), 2),
        "service_agg_ms": round(p(results["agg"]["engine"], 0.5), 2),
        "overhead_ratio_agg": round(p(results["agg"]["engine"], 0.5) / p(results["agg"]["raw"], 0.5), 3),
        "http_point_p50_ms": round(p(results["point"]["http"], 0.5), 2),
        "http_point_p99_ms": round(p(results["point"]["http"], 0.99), 2),
        "join_ms": round(p(results["join"]["engine"], 0.5), 2),
        "rows": outcome["rows"],
    }
    for name, ways in results.items():
        for way, samples in ways.items():
            figures[f"{way}_{name}_p50_ms"] = round(p(samples, 0.5), 2)
            figures[f"{way}_{name}_p99_ms"] = round(p(samples, 0.99), 2)
        figures[f"overhead_ratio_{name}"] = round(p(ways["engine"], 0.5) / p(ways["raw"], 0.5), 3)
        figures[f"http_ratio_{name}"] = round(p(ways["http"], 0.5) / p(ways["raw"], 0.5), 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn", default=os.environ.get("TRACE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--point-repeat", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20, help="runs of the aggregation and the join, each way")
    args = parser.parse_args()
    repeat = {"point": args.point_repeat, "agg": args.repeat, "join": args.repeat}
    outcome = asyncio.run(run(args.dsn, args.rows, repeat))
    print(json.dumps(report(outcome)))


if __name__ == "__main__":
    main()
