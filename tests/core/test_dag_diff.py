"""`diff(old, new)`: the changed jobs, the downstream closure to rebuild, and execution-only edits."""

from __future__ import annotations

from tests.support.dags import VALID_DAG
from trace_core.dag import diff, load_dag_yaml
from trace_core.dag.diff import materialization_fingerprint

OLD = load_dag_yaml(VALID_DAG)


def changed(old_text: str, new_text: str) -> object:
    return diff(OLD, load_dag_yaml(VALID_DAG.replace(old_text, new_text, 1)))


def test_identical_versions_have_an_empty_diff() -> None:
    result = diff(OLD, load_dag_yaml(VALID_DAG))
    assert result.is_empty
    assert result.rebuild == frozenset()


def test_config_edit_rebuilds_the_job_and_everything_downstream() -> None:
    result = diff(OLD, load_dag_yaml(VALID_DAG.replace("range_size: 1000", "range_size: 500")))
    assert result.materialization_changed == {"ranges": ("config",)}
    assert result.rebuild == {"ranges", "blocks_parquet"}
    assert result.execution_changed == {}


def test_leaf_edit_rebuilds_only_the_leaf() -> None:
    result = diff(OLD, load_dag_yaml(VALID_DAG.replace("datatype: blocks", "datatype: transactions")))
    assert result.rebuild == {"blocks_parquet"}


def test_unique_key_is_materialization_affecting() -> None:
    result = diff(OLD, load_dag_yaml(VALID_DAG.replace("unique_key: [hash]", "unique_key: [hash, block]")))
    assert result.materialization_changed == {"whales": ("outputs",)}
    assert result.rebuild == {"whales"}


def test_execution_only_edits_rebuild_nothing() -> None:
    text = (
        VALID_DAG.replace("max_concurrency: 4", "max_concurrency: 2")
        .replace("timeout_s: 600", "timeout_s: 60")
        .replace("max_attempts: 5", "max_attempts: 9")
        .replace("dataset: eth_blocks", "dataset: blocks_v2")
        .replace("key_2", "key_3")
    )
    result = diff(OLD, load_dag_yaml(text))
    assert result.rebuild == frozenset()
    assert result.materialization_changed == {}
    assert result.execution_changed == {"blocks_parquet": ("scaling", "timeout_s", "max_attempts")}
    assert result.publish_changed
    assert result.worker_pools_changed == {"rpc"}


def test_added_and_removed_jobs() -> None:
    text = VALID_DAG.replace(
        "publish:",
        "  tx_parquet:\n    operator: cryo_ingest\n    inputs: [{from: {job: ranges}}]\n"
        "    config: {datatype: transactions}\n    outputs: [{storage: s3}]\npublish:",
    ).replace(
        "  whales:\n    inputs: [{from: {dataset: eth_transactions}}]\n    operator: sql\n"
        '    config: {query: "select * from input where value > 1e21"}\n'
        "    outputs: [{storage: postgres, write_mode: direct, unique_key: [hash]}]\n"
        "    update_strategy: append\n",
        "",
    )
    result = diff(OLD, load_dag_yaml(text))
    assert result.added == {"tx_parquet"}
    assert result.removed == {"whales"}
    assert result.rebuild == {"tx_parquet"}


def test_fingerprint_ignores_execution_fields_and_key_order() -> None:
    reordered = load_dag_yaml(
        VALID_DAG.replace(
            'config: {rpc_url: "http://127.0.0.1:8545", confirmations: 2, start_block: 0}',
            'config: {start_block: 0, confirmations: 2, rpc_url: "http://127.0.0.1:8545"}',
        ).replace("max_attempts: 5", "max_attempts: 1")
    )
    for name in OLD.jobs:
        assert materialization_fingerprint(OLD.jobs[name]) == materialization_fingerprint(reordered.jobs[name])
    assert materialization_fingerprint(OLD.jobs["blocks"]) != materialization_fingerprint(OLD.jobs["ranges"])
