"""DAG documents the suites share."""

from __future__ import annotations

# The DAG of SPEC §3, minus the cross-DAG job: every rule of the spec holds for it.
VALID_DAG = """\
dag: eth_mainnet
worker_pools:
  rpc:
    - env: {RPC_URL: "http://127.0.0.1:8545"}
      secret_env: {RPC_API_KEY: "user/rpc/key_1"}
    - env: {RPC_URL: "http://127.0.0.1:8545"}
      secret_env: {RPC_API_KEY: "user/rpc/key_2"}
jobs:
  blocks:
    activation: source
    operator: block_follower
    config: {rpc_url: "http://127.0.0.1:8545", confirmations: 2, start_block: 0}
    outputs: [{storage: postgres, write_mode: buffered}]
  ranges:
    operator: range_aggregator
    inputs: [{from: {job: blocks, output: 0}}]
    config: {range_size: 1000}
  blocks_parquet:
    operator: cryo_ingest
    inputs: [{from: {job: ranges, output: 0}}]
    execution_strategy: PerPartition
    worker_pool: rpc
    scaling: {max_concurrency: 4}
    timeout_s: 600
    max_attempts: 5
    config: {datatype: blocks}
    outputs: [{storage: s3, format: parquet}]
  whales:
    inputs: [{from: {dataset: eth_transactions}}]
    operator: sql
    config: {query: "select * from input where value > 1e21"}
    outputs: [{storage: postgres, write_mode: direct, unique_key: [hash]}]
    update_strategy: append
publish:
  - {job: blocks_parquet, output: 0, dataset: eth_blocks}
"""
