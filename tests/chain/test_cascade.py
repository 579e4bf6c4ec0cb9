"""Invalidations through a DAG (SPEC §7) on real dispatcher and worker processes: a reorg invalidates blocks,
range_aggregator turns it into an invalidation of the range it had emitted, and every job downstream
reprocesses that range: replace jobs rewrite it and pass the invalidation on, an append job keeps the rows of
the old branch and adds the new ones without duplicates."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.support.stack import Stack

CASCADE = """
dag: cascade
jobs:
  blocks:
    activation: source
    operator: python
    config: {{function: "tests.chain.udfs:scripted_chain", dir: "{dir}"}}
  ranges:
    operator: range_aggregator
    inputs: [{{from: {{job: blocks}}}}]
    config: {{range_size: 4}}
  extract:
    operator: python
    inputs: [{{from: {{job: ranges}}}}]
    execution_strategy: PerPartition
    scaling: {{max_concurrency: 2}}
    config: {{function: "tests.chain.udfs:range_rows", dir: "{dir}"}}
    outputs: [{{storage: s3}}, {{storage: postgres, unique_key: [number]}}]
  old_branch:
    operator: sql
    inputs: [{{from: {{job: extract, output: 0}}}}]
    config: {{query: "select number, hash from input where hash like 'a%'"}}
    outputs: [{{storage: postgres}}]
  marks:
    operator: python
    inputs: [{{from: {{job: ranges}}}}]
    config: {{function: "tests.chain.udfs:old_branch_marks", dir: "{dir}"}}
    outputs: [{{storage: postgres}}]
  audit:
    operator: sql
    inputs: [{{from: {{job: extract, output: 1}}}}]
    update_strategy: append
    config: {{query: "select number, hash from input"}}
    outputs: [{{storage: postgres, unique_key: [hash]}}]
publish:
  - {{job: extract, output: 0, dataset: blocks_parquet}}
  - {{job: extract, output: 1, dataset: blocks_table}}
  - {{job: old_branch, dataset: old_branch}}
  - {{job: marks, dataset: marks}}
  - {{job: audit, dataset: audit}}
"""


def table(stack: Stack, dataset: str) -> str:
    [row] = stack.sql(
        "SELECT storage_location FROM current_dataset_versions WHERE dataset_name = %(n)s", {"n": dataset}
    )
    return str(row["storage_location"])


def rows(stack: Stack, dataset: str) -> list[tuple[int, str]]:
    return [
        (r["number"], r["hash"])
        for r in stack.sql(f"SELECT number, hash FROM {table(stack, dataset)} ORDER BY number, hash")
    ]


def parquet_rows(stack: Stack) -> dict[str, list[tuple[int, str]]]:
    folder = stack.home / "objects" / table(stack, "blocks_parquet")
    return {
        file.name: [(r["number"], r["hash"]) for r in pq.read_table(file).to_pylist()]
        for file in sorted(folder.iterdir())
    }


def kinds(stack: Stack, job: str) -> list[tuple[str, str]]:
    """(kind, range) of the events `job` emitted on its first output, in order."""
    found = stack.sql(
        """SELECT e.kind, e.range_start || '_' || e.range_end AS span FROM events e
           JOIN tasks t ON t.task_id = e.producer_task_id JOIN jobs j ON j.job_id = t.job_id
           JOIN datasets d ON d.dataset_uuid = e.dataset_uuid
           WHERE j.job_name = %(job)s AND d.output_index = 0 ORDER BY e.event_id""",
        {"job": job},
    )
    return [(r["kind"], r["span"]) for r in found]


def test_a_reorg_cascades_through_replace_jobs_and_appends_in_append_jobs(stack: Stack, tmp_path: Path) -> None:
    stack.deploy(CASCADE.format(dir=tmp_path))
    stack.start_worker()
    # branch a: blocks 0..7 make ranges 0_3 and 4_7, each extracted and transformed
    first = {"ranges": 8, "extract": 2, "old_branch": 2, "marks": 2, "audit": 2}
    stack.wait_jobs_done(first)
    a = [(n, f"a{n}") for n in range(8)]
    assert rows(stack, "blocks_table") == a and rows(stack, "old_branch") == a and rows(stack, "marks") == a
    assert parquet_rows(stack) == {"0_3.parquet": a[:4], "4_7.parquet": a[4:]}

    (tmp_path / "go").write_text("1")  # the reorg: blocks 4..7 replaced, then branch b up to 11
    stack.wait_jobs_done({"blocks": 1, "ranges": 17, "extract": 4, "old_branch": 4, "marks": 4, "audit": 4})
    assert set(stack.task_statuses("blocks") + stack.task_statuses("extract")) == {"Completed"}

    b = a[:4] + [(n, f"b{n}") for n in range(4, 12)]
    assert rows(stack, "blocks_table") == b
    assert parquet_rows(stack) == {"0_3.parquet": b[:4], "4_7.parquet": b[4:8], "8_11.parquet": b[8:]}
    # the sql job rewrote 4_7 with no rows: the old branch's rows are gone
    assert rows(stack, "old_branch") == a[:4]
    # the python job wrote nothing at all for 4_7 this time: the platform cleared the scope for it
    assert rows(stack, "marks") == a[:4]
    # append never deletes: the old branch's rows stay beside the new ones, none twice
    assert rows(stack, "audit") == sorted(a + b[4:])

    assert kinds(stack, "ranges") == [("data", "0_3"), ("data", "4_7"), ("invalidation", "4_7"), ("data", "8_11")]
    for job in ("extract", "old_branch", "marks"):
        assert ("invalidation", "4_7") in kinds(stack, job), job
    assert [k for k, span in kinds(stack, "audit") if span == "4_7"] == ["data", "data"]
    [state] = stack.sql("SELECT s.state FROM operator_state s JOIN jobs j USING (job_id) WHERE j.job_name = 'ranges'")
    assert state["state"] == {"next_block": 12, "first_range": 0, "dirty": []}
