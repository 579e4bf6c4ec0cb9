"""Bad configs of the chain operators are DAG errors with the field path and line, before anything runs."""

from __future__ import annotations

import pytest

from trace_core.dag import DagConfigError, load_dag_yaml

CHAIN = """\
dag: chain
worker_pools:
  rpc:
    - env: {{RPC_URL: "http://127.0.0.1:8545"}}
jobs:
  blocks:
    activation: source
    operator: block_follower
    config: {blocks}
  ranges:
    operator: range_aggregator
    inputs: [{{from: {{job: blocks}}}}]
    config: {ranges}
  units:
    operator: range_splitter
    inputs: [{{from: {{job: ranges}}}}]
    config: {units}
"""
GOOD = {
    "blocks": '{rpc_url: "http://127.0.0.1:8545", confirmations: 2, start_block: 0}',
    "ranges": "{range_size: 100}",
    "units": "{}",
}


def dag(**parts: str) -> str:
    return CHAIN.format(**(GOOD | parts))


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(DagConfigError) as error:
        load_dag_yaml(text)
    return [(issue.field, issue.line, issue.message) for issue in error.value.issues]


def test_good_chain_configs_load() -> None:
    config = load_dag_yaml(dag())
    assert config.jobs["ranges"].config == {"range_size": 100}
    # rpc_url may come from the slots of the job's worker pool instead
    load_dag_yaml(
        dag(blocks="{confirmations: 0}").replace(
            "operator: block_follower", "operator: block_follower\n    worker_pool: rpc"
        )
    )


@pytest.mark.parametrize(
    ("parts", "field", "line", "message"),
    [
        (
            {"blocks": "{confirmations: 2}"},
            "jobs.blocks.config.rpc_url",
            9,
            "set config.rpc_url, or run the job in a worker_pool",
        ),
        (
            {"blocks": '{rpc_url: "ftp://x", confirmations: 1}'},
            "jobs.blocks.config.rpc_url",
            9,
            "must be an http:// or https:// URL",
        ),
        (
            {"blocks": '{rpc_url: "http://x", confirmations: -1}'},
            "jobs.blocks.config.confirmations",
            9,
            "greater than or equal to 0",
        ),
        (
            {"blocks": '{rpc_url: "http://x", confirmations: "2"}'},
            "jobs.blocks.config.confirmations",
            9,
            "valid integer",
        ),
        (
            {"blocks": '{rpc_url: "http://x", confirmation: 2}'},
            "jobs.blocks.config.confirmation",
            9,
            "unknown key 'confirmation' of operator block_follower",
        ),
        (
            {"blocks": '{rpc_url: "http://x", start_block: 10, end_block: 5}'},
            "jobs.blocks.config",
            9,
            "end_block 5 is before start_block 10",
        ),
        (
            {"blocks": '{rpc_url: "http://x", poll_interval_s: 0}'},
            "jobs.blocks.config.poll_interval_s",
            9,
            "greater than 0",
        ),
        ({"ranges": "{range_size: 0}"}, "jobs.ranges.config.range_size", 13, "greater than or equal to 1"),
        ({"ranges": "{}"}, "jobs.ranges.config.range_size", 13, "operator range_aggregator needs this field"),
        ({"ranges": "{range_size: 10, start: -5}"}, "jobs.ranges.config.start", 13, "greater than or equal to 0"),
        ({"units": "{max_units: 0}"}, "jobs.units.config.max_units", 17, "greater than or equal to 1"),
    ],
)
def test_bad_configs_name_the_field_and_line(parts: dict[str, str], field: str, line: int, message: str) -> None:
    found = problems(dag(**parts))
    assert any(f == field and ln == line and message in m for f, ln, m in found), found


def test_what_the_chain_operators_need_of_their_jobs() -> None:
    ranges = (
        "config: {range_size: 100}\n    execution_strategy: PerPartition\n    scaling: {max_concurrency: 2}\n"
        "    outputs: [{storage: s3}]"
    )
    text = (
        dag()
        .replace(
            "activation: source\n    operator: block_follower",
            "operator: block_follower\n    runtime: lambda_py\n    inputs: [{from: {job: units}}]",
        )
        .replace("config: {range_size: 100}", ranges)
    )
    found = {(f, m) for f, _, m in problems(text)}
    assert ("jobs.blocks.activation", "block_follower is a source: set activation: source") in found
    assert ("jobs.blocks.runtime", "block_follower runs for as long as it follows: use ecs_python") in found
    assert ("jobs.ranges.execution_strategy", "range_aggregator consumes blocks in order: it runs PerUpdate") in found
    assert (
        "jobs.ranges.scaling.max_concurrency",
        "range_aggregator consumes blocks in order: max_concurrency must be 1",
    ) in found
    assert ("jobs.ranges.outputs", "range_aggregator emits events only: remove outputs (it stores no rows)") in found


def test_the_operators_the_dispatcher_runs_take_no_runtime_pool_or_activation() -> None:
    """range_aggregator and range_splitter run inside the dispatcher: where they run is not the DAG's to say."""
    text = dag().replace(
        "operator: range_aggregator\n",
        "operator: range_aggregator\n    runtime: ecs_python\n    worker_pool: rpc\n",
    )
    text = text.replace(
        "  units:\n    operator: range_splitter\n    inputs: [{from: {job: ranges}}]\n",
        "  units:\n    operator: range_splitter\n    activation: source\n    runtime: lambda_py\n",
    )
    found = problems(text)
    assert (
        "jobs.ranges.runtime",
        12,
        "range_aggregator runs inside the dispatcher, not on a worker runtime: remove runtime",
    ) in found
    assert (
        "jobs.ranges.worker_pool",
        13,
        "range_aggregator runs inside the dispatcher and leases no slot: remove worker_pool",
    ) in found
    assert (
        "jobs.units.activation",
        18,
        "range_splitter runs inside the dispatcher on its input events: it cannot be a source (remove activation)",
    ) in found
    assert (
        "jobs.units.runtime",
        19,
        "range_splitter runs inside the dispatcher, not on a worker runtime: remove runtime",
    ) in found
    # the runtime their tasks run on is the dispatcher's, whatever the YAML's default says
    config = load_dag_yaml(dag())
    assert config.jobs["ranges"].task_runtime == config.jobs["units"].task_runtime == "dispatcher"
    assert config.jobs["blocks"].task_runtime == "ecs_python"


def test_sql_and_python_configs_are_checked_too() -> None:
    text = """\
dag: udfs
jobs:
  source:
    activation: source
    operator: python
    config: {function: "no colon here"}
  transform:
    operator: sql
    inputs: [{from: {job: source}}]
    config: {}
"""
    found = problems(text)
    assert ("jobs.source.config.function", 6, "must be 'module:function', got 'no colon here'") in found
    assert ("jobs.transform.config.query", 10, "operator sql needs this field") in found
