"""`trace deploy`, `trace status`, `trace rollback`, `trace versions`: the deploy lifecycle (SPEC §6) over the
dispatcher's API. A refusal prints the dispatcher's message (and each problem it names), never a traceback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from trace_cli.endpoints import endpoint
from trace_core.contracts.lifecycle import RollbackRequest
from trace_core.settings import Settings

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("status")(status)
    app.command("rollback")(rollback)
    app.command("versions")(versions)


class _Dispatcher:
    """The public API of the dispatcher, for one command: every failure ends the command with its message."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.url, token = endpoint(Settings(), "dispatcher", command)
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def __enter__(self) -> _Dispatcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, *, source: str | None = None, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            err.print(f"[red]{self.command}:[/red] cannot reach the dispatcher at {self.url}: {escape(str(error))}")
            raise typer.Exit(1) from None
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text.strip() or response.reason_phrase}
        if response.status_code >= 400:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            err.print(f"[red]{self.command}: refused ({response.status_code}):[/red] {escape(str(detail))}")
            problems = (body.get("extra") or []) if isinstance(body, dict) else []
            for problem in problems:
                if isinstance(problem, dict) and "message" in problem:
                    where = f"{source}:{problem['line']}: " if source and problem.get("line") else ""
                    err.print(escape(f"  {where}{problem.get('field', '')}: {problem['message']}"))
            raise typer.Exit(1)
        return body


def deploy(
    file: Annotated[Path, typer.Argument(help="The DAG's YAML file.")],
    rematerialize: Annotated[
        str,
        typer.Option(
            help="full: rebuild the changed jobs and their descendants, then cut over; none: serve "
            "the new version at once, continuing the jobs' data instead of rebuilding it."
        ),
    ] = "full",
) -> None:
    """Deploy a DAG, or a new version of a deployed one (TRACE_DISPATCHER_URL and TRACE_TOKEN, else the dev stack)."""
    if rematerialize not in {"full", "none"}:
        err.print(f"[red]--rematerialize:[/red] {rematerialize!r} must be full or none")
        raise typer.Exit(2)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        err.print(f"[red]trace deploy:[/red] cannot read {file}: {error}")
        raise typer.Exit(2) from None
    params = {"rematerialize": "none"} if rematerialize == "none" else {}
    with _Dispatcher("trace deploy") as api:
        result = api.call("POST", "/v1/dags", content=text.encode(), params=params, source=str(file))
    dag, version = result["dag"], result["version"]
    if result["status"] == "unchanged":
        out.print(f"{dag}: nothing to deploy, version {version} already has this YAML")
        return
    superseded = (
        f" (supersedes the rebuild of version {result['superseded_version']})"
        if result.get("superseded_version")
        else ""
    )
    out.print(f"deployed {dag} version {version}: [bold]{result['status']}[/bold]{superseded}")
    if version == 1:
        out.print(f"  jobs     {', '.join(result['changed_jobs'])}")
    for job, fields in result.get("changes", {}).items():
        out.print(f"  changed  {job} ({', '.join(fields)})")
    for job in result.get("removed_jobs", []):
        out.print(f"  removed  {job}")
    if result["status"] == "rebuilding":
        out.print(f"  rebuild  {', '.join(result['rebuild_jobs'])}")
        out.print(f"the previous version keeps serving until the cutover; follow it with `trace status {dag} --watch`")
    elif result.get("continued_jobs"):
        out.print(f"  continue {', '.join(result['continued_jobs'])} (their data is kept, not rebuilt)")


def status(
    dag: Annotated[str, typer.Argument(help="The DAG's name.")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow a rebuild until its cutover.")] = False,
    interval_s: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 1.0,
) -> None:
    """A DAG's active version, a rebuild in progress with a progress bar per job, and its recent versions."""
    with _Dispatcher("trace status") as api:
        state = api.call("GET", f"/v1/dags/{dag}")
        if not watch or state["rebuild"] is None:
            out.print(_render(state))
            return
        rebuilding = state["rebuilding_version"]
        try:
            with Live(_render(state), console=out, refresh_per_second=4) as live:
                while state["rebuild"] is not None and state["rebuilding_version"] == rebuilding:
                    time.sleep(interval_s)
                    state = api.call("GET", f"/v1/dags/{dag}")
                    live.update(_render(state))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    out.print()
    if state["active_version"] == rebuilding:
        out.print(f"[green]cut over:[/green] version {rebuilding} of {dag} is active")
    elif state["rebuild"] is not None:
        out.print(f"the rebuild of version {rebuilding} was superseded by version {state['rebuilding_version']}")
    else:
        out.print(
            f"the rebuild of version {rebuilding} ended without a cutover; version {state['active_version']} is active"
        )


def _render(state: dict[str, Any]) -> RenderableType:
    parts: list[RenderableType] = [
        f"[bold]{state['dag']}[/bold]: version {state['active_version']} active since {_when(state['activated_at'])}"
    ]
    rebuild = state["rebuild"]
    if rebuild is not None:
        caught_up = "caught up, cutting over" if rebuild["caught_up"] else "catching up"
        parts.append(
            f"version {rebuild['version']} rebuilding since {_when(rebuild['started_at'])}: round {rebuild['round']}, "
            f"{caught_up}"
        )
        for reason in rebuild["waiting_for"]:
            parts.append(f"  waiting for {escape(reason)}")
        if rebuild.get("error"):
            parts.append(f"[red]cutover blocked:[/red] {escape(rebuild['error'])}")
        table = Table(box=None, pad_edge=False)
        for column in ("job", "progress", "tasks", "input"):
            table.add_column(column)
        for job in rebuild["jobs"]:
            table.add_row(*_job_row(job))
        parts.append(table)
    recent = ", ".join(f"{v['version']} {v['status']}" for v in state["versions"][:5])
    parts.append(f"versions: {recent}")
    return Group(*parts)


def _job_row(job: dict[str, Any]) -> tuple[RenderableType, ...]:
    tasks = job["tasks"]
    if job["activation"] == "source":
        heads = ", ".join(
            f"output {o['output']}: {_position(o['head'])} of {_position(o['replaced_head'])}" for o in job["outputs"]
        )
        done = job["run"] == "Completed"
        return (
            f"{job['job']} (source)",
            ProgressBar(total=1, completed=1 if done else 0, width=30),
            f"run {job['run']}",
            heads,
        )
    failed = f", {tasks['failed']} failed" if tasks["failed"] else ""
    inputs = ", ".join(
        f"{_position(i['processed'])} of {_position(i['head'])}"
        + (f" (+{i['waiting_events']} waiting)" if i.get("waiting_events") else "")
        for i in job["inputs"]
    )
    return (
        job["job"],
        ProgressBar(total=max(tasks["total"], 1), completed=tasks["done"], width=30),
        f"{tasks['done']}/{tasks['total']}{failed}",
        inputs,
    )


def _position(value: int | None) -> str:
    return "-" if value is None else str(value)


def _when(timestamp: str | None) -> str:
    """An API timestamp to the second, as people read it."""
    return "-" if timestamp is None else timestamp[:19].replace("T", " ")


def rollback(
    dag: Annotated[str, typer.Argument(help="The DAG's name.")],
    to_version: Annotated[
        int | None, typer.Option(help="The version to restore (default: the one that served before).")
    ] = None,
) -> None:
    """Restore the previous version (or --to-version) in one step; during a rebuild, abort the rebuild."""
    body = RollbackRequest(to_version=to_version).model_dump(exclude_none=True)
    with _Dispatcher("trace rollback") as api:
        result = api.call("POST", f"/v1/dags/{dag}/rollback", json=body)
    if result["rolled_back_version"] is not None:
        out.print(
            f"rolled back {dag}: version {result['active_version']} is active again "
            f"(version {result['rolled_back_version']} rolled back)"
        )
    if result["aborted_rebuild"] is not None:
        out.print(f"aborted the rebuild of version {result['aborted_rebuild']} of {dag}")
    out.print(
        f"  {result['canceled_tasks']} task(s) canceled, {result['stopping_tasks']} running task(s) told to stop, "
        f"{result['restored_tasks']} task(s) restored"
    )


def versions(dag: Annotated[str, typer.Argument(help="The DAG's name.")]) -> None:
    """A DAG's versions, newest first: status, who deployed it, when it served, what it changed."""
    with _Dispatcher("trace versions") as api:
        rows = api.call("GET", f"/v1/dags/{dag}/versions")
    table = Table("version", "status", "deployed by", "deployed", "served", "changed", "rebuilt")
    for row in rows:
        changes = row.get("changes") or {}
        if row["activated_at"] is None:
            served = "-"
        else:
            served = (
                f"{_when(row['activated_at'])} .. {_when(row['deactivated_at']) if row['deactivated_at'] else 'now'}"
            )
        table.add_row(
            str(row["version"]),
            row["status"],
            row["deployed_by"] or "-",
            _when(row["created_at"]),
            served,
            ", ".join(changes.get("changed_jobs", [])) or "-",
            ", ".join(changes.get("rebuild_jobs", [])) or "-",
        )
    out.print(table)
