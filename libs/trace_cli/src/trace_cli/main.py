"""`trace`: the command line of Trace."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from trace_cli import devstack, lifecycle
from trace_cli.endpoints import endpoint
from trace_core.dag import DagConfigError, load_dag_file
from trace_core.settings import Settings

app = typer.Typer(help="Trace: versioned blockchain data pipelines.", no_args_is_help=True)
db_app = typer.Typer(help="The Postgres system of record.", no_args_is_help=True)
admin_app = typer.Typer(help="Orgs, users and tokens.", no_args_is_help=True)
dag_app = typer.Typer(help="DAG files.", no_args_is_help=True)
dev_app = typer.Typer(help="The local stack on embedded defaults.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(dag_app, name="dag")
app.add_typer(dev_app, name="dev")
lifecycle.register(app)

out = Console()
err = Console(stderr=True)


def _database_url(settings: Settings) -> str:
    from trace_core.db.pool import resolve_database_url

    return resolve_database_url(settings)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations (TRACE_DATABASE_URL, else the embedded Postgres)."""
    from trace_core.db.migrate import MigrationError, migrate_url

    try:
        applied = asyncio.run(migrate_url(_database_url(Settings())))
    except MigrationError as error:
        err.print(f"[red]migration failed:[/red] {error}")
        raise typer.Exit(1) from None
    if applied:
        for migration in applied:
            out.print(f"applied {migration.number:04d}_{migration.name}")
    else:
        out.print("the schema is up to date")


@admin_app.command("bootstrap")
def admin_bootstrap(
    org: Annotated[str, typer.Option(help="Name of the new org.")],
    admin: Annotated[str, typer.Option(help="Name of its first admin user.")] = "admin",
) -> None:
    """Create an org with its system roles and an admin user; print the admin's API token once."""
    import psycopg
    from psycopg.rows import dict_row

    from trace_core.auth.repository import OrgExistsError, bootstrap_org
    from trace_core.db.migrate import migrate_url
    from trace_core.naming import ORG_NAME

    if not ORG_NAME.match(org):
        err.print(f"[red]--org:[/red] {org!r} must match {ORG_NAME.pattern}")
        raise typer.Exit(2)

    async def run(database_url: str) -> str:
        await migrate_url(database_url)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            _, token = await bootstrap_org(conn, org, admin)
        return token.secret

    try:
        secret = asyncio.run(run(_database_url(Settings())))
    except OrgExistsError as error:
        err.print(f"[red]--org:[/red] {error}")
        raise typer.Exit(1) from None
    except psycopg.errors.CheckViolation:
        err.print(f"[red]--admin:[/red] {admin!r} is not a valid user name")
        raise typer.Exit(2) from None
    err.print(f"org {org!r} created with admin {admin!r}. The token is shown once; keep it:")
    print(secret)


@dag_app.command("validate")
def dag_validate(files: Annotated[list[Path], typer.Argument(help="DAG YAML files.")]) -> None:
    """Check DAG files; print `FILE:LINE: field.path: message` per problem and exit 1 if any."""
    failed = False
    for path in files:
        try:
            config = load_dag_file(path)
        except DagConfigError as error:
            failed = True
            for issue in error.issues:
                print(issue.format(str(path)))
            continue
        err.print(f"{path}: ok (dag {config.dag}, {len(config.jobs)} jobs)")
    if failed:
        raise typer.Exit(1)


@dev_app.command("up")
def dev_up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start in the background and return.")] = False,
    main_job: Annotated[
        bool, typer.Option(help="Deploy examples/eth_devchain.yaml (devchain -> blocks and transactions).")
    ] = True,
) -> None:
    """Start the local stack: embedded Postgres, migrations, dispatcher, Query Service, workers and a mining
    devchain; deploy the main job and show its progress; write .trace/dev.json."""
    settings = Settings()
    try:
        state = devstack.up(settings)
    except devstack.DevStackError as error:
        err.print(f"[red]trace dev up:[/red] {error}")
        raise typer.Exit(1) from None
    try:
        deployed = devstack.deploy_main_job(state) if main_job else None
    except (devstack.DevStackError, httpx.HTTPError) as error:
        devstack.down(settings)
        err.print(f"[red]trace dev up:[/red] {error}")
        raise typer.Exit(1) from None
    out.print(f"[green]Trace is up[/green] (state in {devstack.DevState.path(Path(state.home))})")
    out.print(f"  dispatcher     {state.dispatcher_url}   (OpenAPI at {state.dispatcher_url}/schema)")
    out.print(f'  query service  {state.query_url}   (`trace query "select …"`)')
    out.print(f"  devchain       {state.devchain_url}   (a block every {settings.devchain_block_time_ms} ms)")
    out.print(f"  postgres       {state.database_url}")
    out.print(f"  org {state.org!r}, admin token: {state.admin_token}")
    if deployed:
        out.print(f"  main job       {deployed}")
    if detach:
        out.print('Query it: `.venv/bin/trace query "select count(*) from eth_blocks"`. Stop with `trace dev down`.')
        return
    received = _on_signal()
    if main_job:
        from trace_cli.progress import watch

        watch(state, lambda: bool(received))
    else:
        out.print("Ctrl-C stops the stack.")
        while not received:
            time.sleep(0.2)
    stopped = devstack.down(settings)
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _on_signal() -> list[int]:
    """The signals received from now on (SIGINT, SIGTERM): the foreground stack stops at the first."""
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return received


@dev_app.command("down")
def dev_down() -> None:
    """Stop the local stack started by `trace dev up`."""
    stopped = devstack.down(Settings())
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("query")
def query(
    sql: Annotated[
        str, typer.Argument(help="One SELECT over published dataset names, e.g. 'select * from eth_blocks'.")
    ],
    max_rows: Annotated[
        int | None, typer.Option(help="Rows shown at most (default 100; with --batch, the whole result).")
    ] = None,
    timeout_s: Annotated[
        float | None, typer.Option(help="Interrupt the query after this long (default 30 s; with --batch, 1 h).")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    batch: Annotated[
        bool,
        typer.Option("--batch", help="Run it as a batch query (a task; no 5-minute limit): submit, wait, print."),
    ] = False,
) -> None:
    """Run SQL on the Query Service (TRACE_QUERY_URL and TRACE_TOKEN, else the running dev stack's)."""
    if output not in {"table", "csv", "json"}:
        err.print(f"[red]--format:[/red] {output!r} must be table, csv or json")
        raise typer.Exit(2)
    url, token = endpoint(Settings(), "query", "trace query")
    body: dict[str, Any] = {"sql": sql, "format": "csv" if output == "csv" else "json"}
    if batch:
        body |= {"mode": "batch"}
        body |= {"max_rows": max_rows} if max_rows is not None else {}
        body |= {"timeout_s": timeout_s} if timeout_s is not None else {}
    else:
        body |= {"max_rows": max_rows or 100, "timeout_s": timeout_s or 30}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
        # an interactive query answers when it ends; a batch query's answer is its id, at once
        response = _call(api, "POST", "/v1/query", json=body, timeout=60 if batch else body["timeout_s"] + 10)
        if batch:
            _print_batch(api, response.json()["query_id"], output)
            return
    if output != "table":
        print(response.text, end="" if response.text.endswith("\n") else "\n")
        return
    _print_table(response.json())


def _call(api: Any, method: str, path: str, **options: Any) -> Any:
    """One Query Service call; a refusal or an unreachable service ends the command with its reason."""
    import httpx

    try:
        response = api.request(method, path, **options)
    except httpx.HTTPError as error:
        err.print(f"[red]trace query:[/red] cannot reach the Query Service at {api.base_url}: {error}")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        err.print(f"[red]query refused ({response.status_code}):[/red] {detail}")
        raise typer.Exit(1)
    return response


def _print_batch(api: Any, query_id: str, output: str) -> None:
    """Wait for a batch query (Ctrl-C cancels it), then print its whole result, page after page."""
    err.print(f"batch query {query_id} queued")
    status, delay = "queued", 0.2
    try:
        while status in {"queued", "running"}:
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
            answer = _call(api, "GET", f"/v1/query/{query_id}").json()
            if answer["status"] != status:
                status = answer["status"]
                err.print(f"batch query {query_id} {status}")
    except KeyboardInterrupt:
        _call(api, "POST", f"/v1/query/{query_id}/cancel")
        err.print(f"batch query {query_id} canceled")
        raise typer.Exit(130) from None
    if status != "succeeded":
        err.print(f"[red]batch query {status}:[/red] {answer['error'] or 'no reason recorded'}")
        raise typer.Exit(1)
    pages: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        params = {"format": "csv" if output == "csv" else "json", "offset": offset}
        page = _call(api, "GET", f"/v1/query/{query_id}/result", params=params)
        if output == "csv":
            lines = page.text.splitlines(keepends=True)
            print("".join(lines if offset == 0 else lines[1:]), end="")
            offset = int(page.headers["x-trace-next-offset"]) if page.headers["x-trace-next-offset"] else None
        else:
            pages.append(page.json())
            offset = pages[-1]["next_offset"]
    if output == "csv":
        return
    whole = {**pages[0], "rows": [row for page in pages for row in page["rows"]], "row_count": answer["row_count"]}
    for name in ("offset", "next_offset", "total_rows"):
        whole.pop(name)
    if output == "json":
        print(json.dumps(whole))
    else:
        _print_table(whole)


def _print_table(answer: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(*(column["name"] for column in answer["columns"]))
    for row in answer["rows"]:
        table.add_row(*("" if value is None else str(value) for value in row))
    out.print(table)
    note = f"{answer['row_count']} row(s)"
    if answer.get("truncated"):
        note += f" (truncated at --max-rows {answer['row_count']})"
    err.print(note)
