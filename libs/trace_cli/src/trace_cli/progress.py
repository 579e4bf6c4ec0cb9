"""The live view of `trace dev up`: the devchain's head and how far the main job got, refreshed every second.

Everything comes from the public APIs a user has: the devchain's `/control/head`, the dispatcher's
`GET /v1/dags/eth_devchain` (task counts per job, each output's newest event) and the Query Service (rows of the
published datasets), so the view shows what another terminal would see.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trace_cli.devstack import DevState

MAIN_DAG = "eth_devchain"
FOLLOWER, RANGES = "blocks", "ranges"
EXTRACTS = {"blocks_parquet": "eth_blocks", "transactions_parquet": "eth_transactions"}
ROWS_SQL = "select (select count(*) from eth_blocks) as blocks, (select count(*) from eth_transactions) as txs"


@dataclass
class Snapshot:
    head: int | None = None
    followed: int | None = None
    last_range: str | None = None
    ranges_done: dict[str, int] | None = None
    failed: int = 0
    rows: dict[str, int] | None = None
    problem: str | None = None


def snapshot(state: DevState, client: httpx.Client) -> Snapshot:
    """One reading of every source; what cannot be read yet stays None."""
    seen = Snapshot()
    auth = {"Authorization": f"Bearer {state.admin_token}"}
    try:
        seen.head = client.get(f"{state.devchain_url}/control/head").json()["number"]
        answer = client.get(f"{state.dispatcher_url}/v1/dags/{MAIN_DAG}", headers=auth)
        if answer.status_code == 200:
            dag: dict[str, Any] = answer.json()
            events = {(d["job_name"], d["output_index"]): d.get("last_event") for d in dag["datasets"]}
            follower, ranges = events.get((FOLLOWER, 0)), events.get((RANGES, 0))
            if follower and follower["kind"] == "data":
                seen.followed = follower["range_end"]
            if ranges:
                seen.last_range = f"{ranges['range_start']}..{ranges['range_end']}"
            tasks = {job["job_name"]: job.get("tasks") or {} for job in dag["jobs"]}
            seen.ranges_done = {job: tasks.get(job, {}).get("Completed", 0) for job in EXTRACTS}
            seen.failed = sum(counts.get("Failed", 0) for counts in tasks.values())
        rows = client.post(
            f"{state.query_url}/v1/query", json={"sql": ROWS_SQL, "format": "json", "timeout_s": 5}, headers=auth
        )
        if rows.status_code == 200:
            [[blocks, txs]] = rows.json()["rows"]
            seen.rows = {"eth_blocks": blocks, "eth_transactions": txs}
    except (httpx.HTTPError, ValueError, KeyError) as error:
        seen.problem = str(error) or type(error).__name__
    return seen


def render(seen: Snapshot, state: DevState) -> Group:
    def number(value: int | None) -> str:
        return "…" if value is None else f"{value:,}"

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("chain head", f"{number(seen.head)}   [dim](devchain at {state.devchain_url})[/dim]")
    table.add_row("followed block", f"{number(seen.followed)}   [dim](block_follower, 2 confirmations)[/dim]")
    table.add_row("last range", seen.last_range or "…")
    done = seen.ranges_done or {}
    table.add_row("ranges done", "   ".join(f"{job} {number(done.get(job))}" for job in EXTRACTS))
    rows = seen.rows or {}
    table.add_row("rows written", "   ".join(f"{name} {number(rows.get(name))}" for name in EXTRACTS.values()))
    if seen.failed:
        table.add_row("failed tasks", f"[red]{seen.failed}[/red]   (GET /v1/tasks?dag={MAIN_DAG}&status=Failed)")
    if seen.problem:
        table.add_row("note", f"[yellow]{seen.problem}[/yellow]")
    hint = Text.from_markup(
        '\nQuery from another terminal:  [bold].venv/bin/trace query "select count(*) from eth_blocks"[/bold]\n'
        "Ctrl-C stops the stack."
    )
    return Group(Text.from_markup(f"[bold green]{MAIN_DAG}[/bold green] live"), table, hint)


def line(seen: Snapshot) -> str:
    """The view as one line, for output that is not a terminal (a log, a pipe)."""
    done = seen.ranges_done or {}
    rows = seen.rows or {}
    return f"head {seen.head} followed {seen.followed} last range {seen.last_range} ranges done {done} rows {rows}" + (
        f" failed tasks {seen.failed}" if seen.failed else ""
    )


def watch(state: DevState, stopping: Callable[[], bool], interval_s: float = 1.0) -> None:
    """Show the live view until `stopping()` says so (a line every 10 s when stdout is not a terminal)."""
    console = Console()
    with httpx.Client(timeout=5) as client:
        if not console.is_terminal:
            while not _sleep(10 * interval_s, stopping):
                console.print(line(snapshot(state, client)), soft_wrap=True)
            return
        with Live(render(Snapshot(), state), console=console, auto_refresh=False) as live:
            while True:
                live.update(render(snapshot(state, client), state), refresh=True)
                if _sleep(interval_s, stopping):
                    return


def _sleep(seconds: float, stopping: Callable[[], bool]) -> bool:
    """Wait up to `seconds`; whether to stop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stopping():
            return True
        time.sleep(0.1)
    return stopping()
