"""The headline of SPEC §7 and §10: with reorgs injected at random depths (within and beyond `confirmations`)
while block_follower follows a mining devchain, every published dataset of the DAG ends equal, row for row, to
what the same DAG publishes when it runs over the same final chain without reorgs.

The pipeline: block_follower → range_aggregator → an extraction job writing blocks (Parquet and Postgres) and
transactions (Parquet) per range, reading the node as cryo_ingest does → a sql job (replace) over the
transactions → an append job auditing them. The append job is the one dataset that is not equal, by design
(SPEC §7: append never deletes): it holds the replay's rows plus the orphans of the replaced blocks, each once.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import Any

import pyarrow.parquet as pq

from tests.chain.support import emitted, follower_dag
from tests.support.devchain import Devchain
from tests.support.stack import Stack, wait_for

CONFIRMATIONS = 2
RANGE_SIZE = 5

PIPELINE = """
  ranges:
    operator: range_aggregator
    inputs: [{{from: {{job: blocks}}}}]
    config: {{range_size: {range_size}}}
  extract:
    operator: python
    inputs: [{{from: {{job: ranges}}}}]
    execution_strategy: PerPartition
    scaling: {{max_concurrency: 2}}
    max_attempts: 10
    config: {{function: "tests.chain.udfs:extract_range", rpc_url: "{rpc_url}"}}
    outputs: [{{storage: s3}}, {{storage: postgres, unique_key: [number]}}, {{storage: s3}}]
  even_txs:
    operator: sql
    inputs: [{{from: {{job: extract, output: 2}}}}]
    config: {{query: "select hash, block_number, block_hash, from_address from input where block_number % 2 = 0"}}
    outputs: [{{storage: postgres}}]
  audit:
    operator: sql
    inputs: [{{from: {{job: extract, output: 2}}}}]
    update_strategy: append
    config: {{query: "select hash, block_number, block_hash from input"}}
    outputs: [{{storage: postgres, unique_key: [hash]}}]
publish:
  - {{job: extract, output: 0, dataset: blocks_parquet_{suffix}}}
  - {{job: extract, output: 1, dataset: blocks_{suffix}}}
  - {{job: extract, output: 2, dataset: txs_{suffix}}}
  - {{job: even_txs, dataset: even_txs_{suffix}}}
  - {{job: audit, dataset: audit_{suffix}}}
"""
PARQUET = ("blocks_parquet", "txs")
POSTGRES = ("blocks", "even_txs")


def dag(chain: Devchain, name: str) -> str:
    more = PIPELINE.format(range_size=RANGE_SIZE, rpc_url=chain.url, suffix=name)
    return follower_dag(chain.url, dag=name, confirmations=CONFIRMATIONS, more=more)


def location(stack: Stack, dataset: str) -> str:
    [row] = stack.sql(
        "SELECT storage_location FROM current_dataset_versions WHERE dataset_name = %(n)s", {"n": dataset}
    )
    return str(row["storage_location"])


def settled(stack: Stack, name: str, through: int) -> bool:
    """`name`'s follower emitted block `through`, and every event is routed and every task run."""
    blocks = [e["end"] for e in emitted(stack, dag=name) if e["kind"] == "data"]
    if not blocks or max(blocks) < through:
        return False
    [busy] = stack.sql(
        """SELECT (SELECT count(*) FROM events WHERE routed_at IS NULL)
                + (SELECT count(*) FROM tasks WHERE input_event_id IS NOT NULL
                   AND status NOT IN ('Completed', 'Failed', 'Canceled')) AS n"""
    )
    return bool(busy["n"] == 0)


def published(stack: Stack, name: str, last: int) -> dict[str, Any]:
    """Every published dataset of DAG `name` over blocks 0..last: Parquet files by name with their rows,
    Postgres rows sorted."""
    found: dict[str, Any] = {}
    for dataset in PARQUET:
        folder = stack.home / "objects" / location(stack, f"{dataset}_{name}")
        found[dataset] = {
            file.name: pq.read_table(file).to_pylist()
            for file in sorted(folder.iterdir())
            if int(file.name.split("_")[1].removesuffix(".parquet")) <= last
        }
    for dataset in (*POSTGRES, "audit"):
        columns = "hash, block_number, block_hash" if dataset == "audit" else "*"
        number = "number" if dataset == "blocks" else "block_number"
        found[dataset] = stack.sql(
            f"SELECT {columns} FROM {location(stack, f'{dataset}_{name}')} WHERE {number} <= %(last)s ORDER BY 1, 2",
            {"last": last},
        )
    return found


def strip_system(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("_trace_")} for row in rows]


def test_published_datasets_after_random_reorgs_equal_a_run_without_reorgs(stack: Stack, devchain: Devchain) -> None:
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    depths = [rng.randint(1, CONFIRMATIONS), rng.randint(CONFIRMATIONS + 1, 8)]
    depths += [rng.randint(1, 8) for _ in range(4)]
    rng.shuffle(depths)
    print(f"reorg seed {seed}, depths {depths}")  # shown when the test fails: the run can be reasoned about

    stack.deploy(dag(devchain, "live"))
    stack.start_worker(concurrency=3)
    devchain.mining(80)
    for depth in depths:
        time.sleep(rng.uniform(0.3, 1.2))
        devchain.reorg(depth)
    devchain.mining(None)
    # and one reorg deeper than a range, once everything before it was extracted and transformed
    through = devchain.head()["number"] - CONFIRMATIONS
    wait_for(lambda: settled(stack, "live", through), 180, f"the live DAG to settle at block {through}")
    depths.append(rng.randint(CONFIRMATIONS + RANGE_SIZE + 1, 12))
    devchain.reorg(depths[-1])
    devchain.mine(rng.randint(0, 3))
    head = devchain.head()["number"]
    through = head - CONFIRMATIONS
    last = (through + 1) // RANGE_SIZE * RANGE_SIZE - 1  # the last complete range ends here
    wait_for(lambda: settled(stack, "live", through), 180, f"the live DAG to settle at block {through}")

    invalidated = [e for e in emitted(stack, job="ranges", dag="live") if e["kind"] == "invalidation"]
    assert invalidated, f"seed {seed}: no reorg reached an emitted range; depths {depths}"

    stack.deploy(dag(devchain, "replay"))  # the same final chain, followed with no reorg
    wait_for(lambda: settled(stack, "replay", through), 180, f"the replay DAG to settle at block {through}")
    assert not [e for e in emitted(stack, dag="replay") if e["kind"] == "invalidation"]
    assert stack.sql("SELECT count(*) AS n FROM tasks WHERE status = 'Failed'") == [{"n": 0}]

    live, replay = published(stack, "live", last), published(stack, "replay", last)
    for dataset in PARQUET:
        assert live[dataset] == replay[dataset], f"seed {seed}: {dataset} differs"
        assert len(live[dataset]) == (last + 1) // RANGE_SIZE
    for dataset in POSTGRES:
        assert strip_system(live[dataset]) == strip_system(replay[dataset]), f"seed {seed}: {dataset} differs"
    canonical = {n: devchain.rpc("eth_getBlockByNumber", hex(n), False)["hash"] for n in range(last + 1)}
    assert {r["number"]: r["hash"] for r in live["blocks"]} == canonical

    # the append job kept the replaced blocks' transactions, each once, beside the replay's rows
    replayed = {row["hash"] for row in replay["audit"]}
    assert replayed <= {row["hash"] for row in live["audit"]}
    orphans = [row for row in live["audit"] if row["hash"] not in replayed]
    assert orphans, f"seed {seed}: the append job kept no row of a replaced block"
    assert all(canonical[row["block_number"]] != row["block_hash"] for row in orphans)
    assert len({row["hash"] for row in live["audit"]}) == len(live["audit"])
