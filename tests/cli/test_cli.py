"""The `trace` command as a user runs it: migrate, bootstrap, and the dev stack up and down."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from tests.support.dags import EXAMPLES
from tests.support.stack import wait_for
from trace_cli.main import app

TRACE = [sys.executable, "-m", "trace_cli"]


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for command in (
        [],
        ["db"],
        ["db", "migrate"],
        ["admin", "bootstrap"],
        ["dag", "validate"],
        ["dev", "up"],
        ["dev", "down"],
    ):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage" in result.stdout


def test_db_migrate_then_nothing_to_do(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_DATABASE_URL", empty_database_url)
    first = CliRunner().invoke(app, ["db", "migrate"])
    assert first.exit_code == 0 and "applied 0001_initial" in first.stdout
    second = CliRunner().invoke(app, ["db", "migrate"])
    assert second.exit_code == 0 and "up to date" in second.stdout


def test_bootstrap_prints_a_working_token_once(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["admin", "bootstrap", "--org", "acme"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("trc_")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM api_tokens WHERE display_prefix = %s", (token[:10],)).fetchone() == (
            1,
        )
    again = CliRunner().invoke(app, ["admin", "bootstrap", "--org", "acme"])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = CliRunner().invoke(app, ["admin", "bootstrap", "--org", "Not An Org"])
    assert bad.exit_code == 2 and "--org" in bad.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dev_up_detach_then_down(tmp_path: Path) -> None:
    """The whole local stack on the embedded Postgres, as `trace dev up --detach` starts it."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "TRACE_DATABASE_URL"}
    env |= {"TRACE_HOME": str(home), "TRACE_DISPATCHER_PORT": str(_free_port()), "TRACE_QUERY_PORT": str(_free_port())}
    up = subprocess.run([*TRACE, "dev", "up", "--detach"], env=env, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        state = json.loads((home / "dev.json").read_text())
        assert set(state) >= {"dispatcher_url", "database_url", "admin_token", "pids"}
        headers = {"Authorization": f"Bearer {state['admin_token']}"}
        me = httpx.get(f"{state['dispatcher_url']}/v1/me", headers=headers, timeout=5)
        assert me.status_code == 200 and me.json()["org_name"] == "dev"
        again = subprocess.run([*TRACE, "dev", "up", "--detach"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "already running" in again.stderr

        # the user path of the datasets issue: deploy, let it run, query and join from another terminal
        trades = (EXAMPLES / "trades.yaml").read_text()
        deployed = httpx.post(f"{state['dispatcher_url']}/v1/dags", content=trades, headers=headers, timeout=30)
        assert deployed.status_code == 201, deployed.text
        join = "select t.id, t.amount, p.wei from big_trades t join trades_parquet p using (id) order by t.id limit 3"

        def answered() -> str | None:
            run = subprocess.run([*TRACE, "query", join, "--format", "csv"], env=env, capture_output=True, text=True)
            return run.stdout if run.returncode == 0 and run.stdout.count("\n") == 4 else None

        assert wait_for(answered, 60, "the trades to be queryable").splitlines() == [
            "id,amount,wei",
            "2,30,2000000000000000000000",
            "3,40,3000000000000000000000",
            "12,30,2000000000000000000000",
        ]
        # the same join as a batch query: a task of the dev stack's worker, waited for and printed by the CLI
        batch = subprocess.run(
            [*TRACE, "query", join, "--batch", "--format", "csv"], env=env, capture_output=True, text=True, timeout=120
        )
        assert batch.returncode == 0, batch.stderr
        assert batch.stdout == answered() and "succeeded" in batch.stderr
        refused = subprocess.run([*TRACE, "query", "select * from nowhere"], env=env, capture_output=True, text=True)
        assert refused.returncode == 1 and "404" in refused.stderr
    finally:
        down = subprocess.run([*TRACE, "dev", "down"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and "dispatcher" in down.stdout and "postgres" in down.stdout
    assert "query-service" in down.stdout
    assert not (home / "dev.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{state['dispatcher_url']}/healthz", timeout=2)
