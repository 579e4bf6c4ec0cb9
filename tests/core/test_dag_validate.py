"""`trace dag validate` on the bad inputs SPEC §3 names: each error names its line and field path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.dags import VALID_DAG
from trace_cli.main import app

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>\S+): (?P<message>.+)$")


def validate(tmp_path: Path, text: str, name: str = "dag.yaml") -> tuple[int, list[dict[str, str]]]:
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(app, ["dag", "validate", str(path)])
    errors = []
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        assert match, f"not FILE:LINE: field: message: {line!r}"
        assert match["file"] == str(path)
        errors.append(match.groupdict())
    return result.exit_code, errors


def edit(old: str, new: str) -> str:
    assert old in VALID_DAG
    return VALID_DAG.replace(old, new, 1)


def test_the_spec_example_is_valid(tmp_path: Path) -> None:
    code, errors = validate(tmp_path, VALID_DAG)
    assert (code, errors) == (0, [])


CASES = [
    pytest.param(
        edit("    inputs: [{from: {job: blocks, output: 0}}]", "    inputs: [{from: {job: blocks_parquet}}]"),
        "jobs.ranges.inputs|jobs.blocks_parquet.inputs",
        None,
        "the inputs form a cycle",
        id="cycle",
    ),
    pytest.param(
        edit("{from: {job: blocks, output: 0}}", "{from: {job: blocks, output: 1}}"),
        "jobs.ranges.inputs.0.from.output",
        "inputs: [{from: {job: blocks, output: 1}}]",
        "output 1 is out of range: job 'blocks' has 1 output(s)",
        id="output-index-out-of-range",
    ),
    pytest.param(
        edit("{from: {job: ranges, output: 0}}", "{from: {job: rangez, output: 0}}"),
        "jobs.blocks_parquet.inputs.0.from.job",
        "{job: rangez, output: 0}",
        "no job 'rangez' in this DAG",
        id="from-job-missing",
    ),
    pytest.param(
        edit("execution_strategy: PerPartition", "execution_strategy: Bulk"),
        "jobs.blocks_parquet.execution_strategy",
        "execution_strategy: Bulk",
        "range_aggregator",
        id="bulk",
    ),
    pytest.param(
        edit("unique_key: [hash]", "unique_key: []"),
        "jobs.whales.outputs.0.unique_key",
        "unique_key: []",
        "append requires unique_key",
        id="append-without-unique-key",
    ),
    pytest.param(
        edit("    timeout_s: 600\n", "    timeout_s: 600\n    retries: 3\n"),
        "jobs.blocks_parquet.retries",
        "retries: 3",
        "unknown key 'retries'",
        id="unknown-key",
    ),
    pytest.param(
        edit("dag: eth_mainnet", "dag: Eth-Mainnet"),
        "dag",
        "dag: Eth-Mainnet",
        "DAG name 'Eth-Mainnet' must match",
        id="dag-name-regex",
    ),
    pytest.param(
        edit("dataset: eth_blocks}", "dataset: 9blocks}"),
        "publish.0.dataset",
        "dataset: 9blocks",
        "dataset name '9blocks' must match",
        id="dataset-name-regex",
    ),
    pytest.param(
        edit("worker_pool: rpc", "worker_pool: archive"),
        "jobs.blocks_parquet.worker_pool",
        "worker_pool: archive",
        "no worker pool 'archive' (worker_pools: rpc)",
        id="unknown-worker-pool",
    ),
    pytest.param(
        edit(
            "    operator: block_follower\n",
            "    operator: block_follower\n    inputs: [{from: {job: ranges}}]\n",
        ),
        "jobs.blocks.inputs",
        "inputs: [{from: {job: ranges}}]",
        "a source job has no inputs",
        id="source-with-inputs",
    ),
    pytest.param(
        edit("    inputs: [{from: {job: blocks, output: 0}}]\n", ""),
        "jobs.ranges.inputs",
        "  ranges:",
        "a reactive job needs at least one input",
        id="reactive-without-inputs",
    ),
    pytest.param(
        VALID_DAG + "  - {job: blocks, dataset: eth_blocks}\n",
        "publish.1.dataset",
        "- {job: blocks, dataset: eth_blocks}",
        "dataset 'eth_blocks' is already published by publish.0",
        id="two-publishes-of-one-name",
    ),
    pytest.param(
        "dag: x\njobs:\n  a: {operator: noop\n",
        "<document>",
        None,
        "not valid YAML",
        id="not-yaml",
    ),
    pytest.param("", "<document>", None, "the document is empty", id="empty-file"),
    pytest.param("# only a comment\n\n", "<document>", None, "the document is empty", id="only-comments"),
    pytest.param("- a\n- b\n", "<document>", None, "not a list", id="not-a-mapping"),
    pytest.param(
        edit("    operator: sql\n", "    operator: sql\n    runtime: ecs_rust\n"),
        "jobs.whales.runtime",
        "runtime: ecs_rust",
        "runtime 'ecs_rust' is not available yet",
        id="runtime-not-available",
    ),
    pytest.param(
        edit("    operator: sql\n", "    operator: duckdb_query\n"),
        "jobs.whales.operator",
        "operator: duckdb_query",
        "runs the Query Service's batch queries",
        id="platform-operator",
    ),
    pytest.param(
        edit("  ranges:\n", "  blocks:\n    operator: noop\n    activation: source\n  ranges:\n"),
        "jobs.blocks",
        "  blocks:\n    operator: noop",
        "key 'blocks' is given twice",
        id="duplicate-job",
    ),
]


@pytest.mark.parametrize(("text", "field", "line_needle", "message"), CASES)
def test_bad_input_names_field_and_line(
    tmp_path: Path, text: str, field: str, line_needle: str | None, message: str
) -> None:
    code, errors = validate(tmp_path, text)
    assert code == 1
    matching = [e for e in errors if e["field"] in field.split("|") and message in e["message"]]
    assert matching, f"no error for {field} with {message!r} in {errors}"
    if line_needle is not None:
        first_line = line_needle.splitlines()[0]
        expected = [str(i) for i, line in enumerate(text.splitlines(), 1) if first_line in line]
        if "\n" in line_needle:  # the second occurrence (a duplicate key) is the one reported
            expected = expected[1:]
        assert matching[0]["line"] in expected


def test_not_yaml_points_at_the_broken_line(tmp_path: Path) -> None:
    _, errors = validate(tmp_path, "dag: x\njobs:\n  a:\n    operator: [noop\n  b: 1\n")
    assert errors[0]["line"] in {"4", "5"}


def test_cycle_is_reported_on_a_job_of_the_cycle_with_its_line(tmp_path: Path) -> None:
    text = edit("    inputs: [{from: {job: blocks, output: 0}}]", "    inputs: [{from: {job: blocks_parquet}}]")
    _, errors = validate(tmp_path, text)
    [error] = errors
    job = error["field"].split(".")[1]
    assert error["message"] == "the inputs form a cycle: " + (
        "ranges -> blocks_parquet -> ranges"
        if job == "blocks_parquet"
        else "blocks_parquet -> ranges -> blocks_parquet"
    )
    job_lines = [i for i, line in enumerate(text.splitlines(), 1) if line == f"  {job}:"]
    assert int(error["line"]) > job_lines[0]


def test_every_file_is_checked_and_ok_files_pass(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(VALID_DAG)
    bad.write_text(edit("worker_pool: rpc", "worker_pool: nope"))
    result = CliRunner().invoke(app, ["dag", "validate", str(good), str(bad)])
    assert result.exit_code == 1
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(bad)]


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = CliRunner().invoke(app, ["dag", "validate", str(missing)])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{missing}:1: <document>: cannot read the file")
