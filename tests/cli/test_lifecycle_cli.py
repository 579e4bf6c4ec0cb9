"""`trace deploy`, `trace status [--watch]`, `trace versions` and `trace rollback` against a running dispatcher
and worker, and their errors: the dispatcher's message, never a traceback."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.lifecycle.conftest import lifecycle_dag
from tests.support.stack import Stack
from trace_cli.main import app


def trace(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.fixture
def cli_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The CLI pointed at the stack's dispatcher with the admin's token, on a wide terminal."""
    monkeypatch.setenv("TRACE_DISPATCHER_URL", stack.dispatcher_url)
    monkeypatch.setenv("TRACE_TOKEN", stack.admin_token)
    monkeypatch.setenv("COLUMNS", "220")
    return stack


def test_every_lifecycle_command_has_help() -> None:
    for command in ("deploy", "status", "rollback", "versions"):
        code, output = trace(command, "--help")
        assert code == 0 and "Usage" in output


def test_deploy_watch_a_rebuild_to_its_cutover_then_roll_back(cli_env: Stack, tmp_path: Path) -> None:
    stack = cli_env
    first, second = tmp_path / "lc.yaml", tmp_path / "lc2.yaml"
    gate = tmp_path / "gate"
    first.write_text(lifecycle_dag(tmp_path))
    second.write_text(lifecycle_dag(tmp_path, factor=3, scaled_extra=f', gate: "{gate}"'))

    code, output = trace("deploy", str(first))
    assert code == 0 and "deployed lc version 1: active" in output
    stack.start_worker()
    stack.wait_jobs_done({"numbers": 1, "scaled": 4, "total": 4, "mirror": 4})
    code, output = trace("deploy", str(second))
    assert code == 0 and "deployed lc version 2: rebuilding" in output
    assert "changed  scaled (config)" in output and "rebuild  scaled, total" in output
    code, output = trace("deploy", str(second))
    assert code == 0 and "nothing to deploy" in output

    code, output = trace("status", "lc")
    assert code == 0 and "version 1 active" in output and "version 2 rebuilding" in output
    assert "scaled" in output and "total" in output

    opener = threading.Timer(1.0, gate.write_text, args=("open",))
    opener.start()
    code, output = trace("status", "lc", "--watch", "--interval-s", "0.2")
    opener.join()
    assert code == 0 and "cut over: version 2 of lc is active" in output, output

    code, output = trace("versions", "lc")
    assert code == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if "│" in line]
    assert [row[:3] for row in rows] == [["2", "active", "admin"], ["1", "retired", "admin"]]
    assert rows[0][5:] == ["scaled", "scaled, total"]

    code, output = trace("rollback", "lc")
    assert code == 0 and "rolled back lc: version 1 is active again (version 2 rolled back)" in output
    code, output = trace("rollback", "lc")
    assert code == 1 and "refused (409)" in output and "no previous version" in output
    code, output = trace("rollback", "lc", "--to-version", "9")
    assert code == 1 and "refused (404)" in output and "no version 9" in output


def test_errors_are_messages(cli_env: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dag: lc\njobs:\n  a:\n    operator: noop\n    execution_strategy: Bulk\n")
    code, output = trace("deploy", str(bad))
    assert code == 1 and "refused (422)" in output
    assert f"{bad}:5: jobs.a.execution_strategy:" in output.replace("\n", "")
    code, output = trace("deploy", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in output
    code, output = trace("deploy", str(bad), "--rematerialize", "some")
    assert code == 2 and "--rematerialize" in output
    code, output = trace("status", "nope")
    assert code == 1 and "refused (404)" in output and "no DAG 'nope'" in output

    monkeypatch.setenv("TRACE_DISPATCHER_URL", "http://127.0.0.1:9")
    code, output = trace("versions", "lc")
    assert code == 1 and "cannot reach the dispatcher at http://127.0.0.1:9" in output
    monkeypatch.delenv("TRACE_TOKEN")
    monkeypatch.setenv("TRACE_HOME", str(tmp_path / "no-stack"))
    code, output = trace("status", "lc")
    assert code == 2 and "set TRACE_TOKEN (and TRACE_DISPATCHER_URL)" in output
