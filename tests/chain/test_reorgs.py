"""The headline of SPEC §7 and §10: with reorgs injected at random depths (within and beyond `confirmations`)
while block_follower follows a mining devchain, every published dataset of the DAG ends equal, row for row, to
what the same DAG publishes when it runs over the same final chain without reorgs.

The pipeline: block_follower → range_aggregator → cryo_ingest of blocks and of transactions (Parquet) → sql
jobs (replace, Postgres) over each → an append job auditing the transactions. The append job is the one
dataset that is not equal, by design (SPEC §7: append never deletes): it holds the replay's rows plus the
transactions of the replaced blocks, each once.
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
  blocks_parquet:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges}}}}]
    execution_strategy: PerPartition
    scaling: {{max_concurrency: 2}}
    max_attempts: 10
    config: {{datatype: blocks, rpc_url: "{rpc_url}", max_concurrent_requests: 4}}
    outputs: [{{storage: s3}}]
  txs:
    operator: cryo_ingest
    inputs: [{{from: {{job: ranges}}}}]
    execution_strategy: PerPartition
    scaling: {{max_concurrency: 2}}
    max_attempts: 10
    config: {{datatype: transactions, rpc_url: "{rpc_url}", max_concurrent_requests: 4}}
    outputs: [{{storage: s3}}]
  blocks_table:
    operator: sql
    inputs: [{{from: {{job: blocks_parquet}}}}]
    config: {{query: "select block_number, block_hash, timestamp, gas_used from input"}}
    outputs: [{{storage: postgres}}]
  even_txs:
    operator: sql
    inputs: [{{from: {{job: txs}}}}]
    config: {{query: "select transaction_hash, block_number, from_address, value_string from input
                     where block_number % 2 = 0"}}
    outputs: [{{storage: postgres}}]
  audit:
    operator: sql
    inputs: [{{from: {{job: txs}}}}]
    update_strategy: append
    config: {{query: "select transaction_hash, block_number from input"}}
    outputs: [{{storage: postgres, unique_key: [transaction_hash]}}]
publish:
  - {{job: blocks_parquet, dataset: blocks_parquet_{suffix}}}
  - {{job: txs, dataset: txs_{suffix}}}
  - {{job: blocks_table, dataset: blocks_table_{suffix}}}
  - {{job: even_txs, dataset: even_txs_{suffix}}}
  - {{job: audit, dataset: audit_{suffix}}}
"""
PARQUET = ("blocks_parquet", "txs")
POSTGRES = ("blocks_table", "even_txs", "audit")


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
        """SELECT (SELECT count(*) FROM unrouted_events)
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
    for dataset in POSTGRES:
        found[dataset] = strip_system(
            stack.sql(
                f"SELECT * FROM {location(stack, f'{dataset}_{name}')} WHERE block_number <= %(last)s ORDER BY 1, 2",
                {"last": last},
            )
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
    devchain.mine(rng.randint(1, 3))
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
    for dataset in ("blocks_table", "even_txs"):
        assert live[dataset] == replay[dataset], f"seed {seed}: {dataset} differs"
    canonical = {n: devchain.rpc("eth_getBlockByNumber", hex(n), False)["hash"] for n in range(last + 1)}
    assert {r["block_number"]: r["block_hash"] for r in live["blocks_table"]} == canonical
    transactions = sum(len(rows) for rows in live["txs"].values())
    assert transactions == sum(
        len(devchain.rpc("eth_getBlockByNumber", hex(n), False)["transactions"]) for n in canonical
    )

    # the append job kept the replaced blocks' transactions, each once, beside the replay's rows
    replayed = {row["transaction_hash"] for row in replay["audit"]}
    audited = [row["transaction_hash"] for row in live["audit"]]
    assert replayed <= set(audited) and len(set(audited)) == len(audited)
    orphans = set(audited) - replayed
    assert orphans, f"seed {seed}: the append job kept no transaction of a replaced block"
    assert all(devchain.rpc("eth_getTransactionByHash", tx) is None for tx in orphans)
