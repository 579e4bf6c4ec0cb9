"""Helpers of the deploy-lifecycle suite: the DAG it edits, and a reader that queries published datasets the way
the Query Service does (pin the versions at the start, then run on the locked-down DuckDB engine)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.stack import Stack, wait_for
from trace_core.auth.principal import Principal
from trace_core.auth.repository import principal_by_token_hash
from trace_core.auth.tokens import hash_token
from trace_core.objectstore import open_object_store
from trace_core.query import (
    CheckedQuery,
    DatasetUnavailableError,
    PinnedQuery,
    QueryEngine,
    finish_query,
    pin_datasets,
)
from trace_core.settings import Settings


def lifecycle_dag(
    tmp: Path,
    *,
    factor: int = 2,
    source: str = "count: 4",
    scaled_extra: str = "",
    total_query: str = "select n, value + 1 as value from input",
    mirror_scaling: int = 1,
) -> str:
    """`lc`: a source of numbers, `scaled` (python) and `total` (sql) downstream of it, and `mirror` (sql into
    Postgres) beside them. Every output is published under its job's name."""
    return f"""
dag: lc
jobs:
  numbers:
    activation: source
    operator: python
    config: {{function: "tests.support.udfs:numbered_rows", {source}}}
    outputs: [{{storage: s3}}]
  scaled:
    operator: python
    inputs: [{{from: {{job: numbers}}}}]
    config: {{function: "tests.support.udfs:scaled_rows", factor: {factor}, dir: "{tmp}"{scaled_extra}}}
    outputs: [{{storage: s3}}]
  total:
    operator: sql
    inputs: [{{from: {{job: scaled}}}}]
    config: {{query: "{total_query}"}}
    outputs: [{{storage: s3}}]
  mirror:
    operator: sql
    inputs: [{{from: {{job: numbers}}}}]
    scaling: {{max_concurrency: {mirror_scaling}}}
    config: {{query: "select n from input"}}
    outputs: [{{storage: postgres, write_mode: direct}}]
publish:
  - {{job: numbers, dataset: numbers}}
  - {{job: scaled, dataset: scaled}}
  - {{job: total, dataset: total}}
  - {{job: mirror, dataset: mirror}}
"""


@dataclass
class Pinned:
    checked: CheckedQuery
    pinned: PinnedQuery

    @property
    def versions(self) -> dict[str, str]:
        return {d.dataset_name: str(d.dataset_version) for d in self.pinned.datasets}


class Reader:
    """Queries over published datasets: `pin` resolves the names to their current versions (as a query's start
    does), `run` executes a pinned query later, `query` does both at once."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        settings = Settings(database_url=stack.database_url, home=stack.home, migrate_on_start=False)
        self.engine = QueryEngine(
            open_object_store(settings),
            database_url=stack.database_url,
            aws_region=settings.aws_region,
            aws_endpoint_url=None,
        )
        self.principal = asyncio.run(self._principal())

    async def _principal(self) -> Principal:
        async with await psycopg.AsyncConnection.connect(self.stack.database_url, row_factory=dict_row) as conn:
            principal = await principal_by_token_hash(conn, hash_token(self.stack.admin_token))
        assert principal is not None
        return principal

    def pin(self, sql: str) -> Pinned:
        checked = self.engine.check(sql)

        async def pin() -> PinnedQuery:
            async with await psycopg.AsyncConnection.connect(
                self.stack.database_url, autocommit=True, row_factory=dict_row
            ) as conn:
                return await pin_datasets(
                    conn,
                    self.principal,
                    sql=sql,
                    names=checked.dataset_names,
                    max_rows=10_000,
                    timeout_s=60,
                    format="json",
                )

        return Pinned(checked, asyncio.run(pin()))

    def run(self, pinned: Pinned) -> list[dict[str, Any]]:
        result = self.engine.execute(pinned.checked, pinned.pinned.datasets, 10_000)

        async def finish() -> None:
            async with await psycopg.AsyncConnection.connect(
                self.stack.database_url, autocommit=True, row_factory=dict_row
            ) as conn:
                await finish_query(conn, pinned.pinned.query_id, "Completed", row_count=result.table.num_rows)

        asyncio.run(finish())
        rows: list[dict[str, Any]] = result.table.to_pylist()
        return rows

    def query(self, sql: str) -> list[dict[str, Any]]:
        return self.run(self.pin(sql))

    def rows(self, dataset: str) -> list[dict[str, Any]]:
        """Every row of `dataset` by `n`; none while it has no data yet."""
        try:
            return self.query(f"select * from {dataset} order by n")
        except DatasetUnavailableError:
            return []

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def reader(stack: Stack) -> Iterator[Reader]:
    """Queries over the stack's published datasets, through the Query Service's engine."""
    reader = Reader(stack)
    try:
        yield reader
    finally:
        reader.close()


def dag_status(stack: Stack, dag: str = "lc") -> dict[str, Any]:
    with stack.client() as api:
        response = api.get(f"/v1/dags/{dag}")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def wait_active(stack: Stack, version: int, dag: str = "lc", timeout_s: float = 90) -> dict[str, Any]:
    """Wait until `version` serves (its cutover happened); fail with the rebuild's progress otherwise."""
    seen: dict[str, Any] = {}

    def active() -> bool:
        seen.update(dag_status(stack, dag))
        return bool(seen["active_version"] == version)

    try:
        wait_for(active, timeout_s, f"version {version} to become active")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; rebuild: {json.dumps(seen.get('rebuild'), default=str)}") from None
    return seen


def version_jobs(stack: Stack, version: int, dag: str = "lc") -> dict[str, dict[str, Any]]:
    """Per job of a version: its job row and the dataset version of each output."""
    rows = stack.sql(
        """SELECT vj.job_name, vj.job_id::text AS job_id, vj.rebuilds, ds.output_index,
                  dv.dataset_uuid::text AS dataset_uuid, dv.dataset_version::text AS dataset_version
           FROM dags d JOIN dag_versions v ON v.dag_id = d.dag_id
           JOIN dag_version_jobs vj ON vj.dag_version_id = v.dag_version_id
           JOIN dataset_versions dv ON dv.job_id = vj.job_id
           JOIN datasets ds ON ds.dataset_uuid = dv.dataset_uuid
           WHERE d.dag_name = %(dag)s AND v.version = %(version)s""",
        {"dag": dag, "version": version},
    )
    jobs: dict[str, dict[str, Any]] = {}
    for row in rows:
        job = jobs.setdefault(row["job_name"], {"job_id": row["job_id"], "rebuilds": row["rebuilds"], "outputs": {}})
        job["outputs"][row["output_index"]] = (row["dataset_uuid"], row["dataset_version"])
    return jobs


def job_tasks(stack: Stack, job_id: str) -> list[str]:
    rows = stack.sql(
        "SELECT status FROM tasks WHERE job_id = %(j)s AND input_event_id IS NOT NULL ORDER BY input_event_id",
        {"j": job_id},
    )
    return [row["status"] for row in rows]
