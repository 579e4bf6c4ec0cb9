"""Where the CLI's HTTP commands find a service and the API token to call it with."""

from __future__ import annotations

import os
from typing import Literal

import typer
from rich.console import Console

from trace_cli import devstack
from trace_core.settings import Settings

err = Console(stderr=True)

Service = Literal["dispatcher", "query"]
_URL_VARIABLE = {"dispatcher": "TRACE_DISPATCHER_URL", "query": "TRACE_QUERY_URL"}


def endpoint(settings: Settings, service: Service, command: str) -> tuple[str, str]:
    """The service's URL and an API token: TRACE_TOKEN (with TRACE_DISPATCHER_URL / TRACE_QUERY_URL), else the
    running dev stack's `.trace/dev.json`. Exits with a message saying what to set when neither is there."""
    token = os.environ.get("TRACE_TOKEN")
    if token:
        return (settings.dispatcher_url if service == "dispatcher" else settings.query_url), token
    try:
        state = devstack.DevState.read(settings.home.resolve())
    except devstack.DevStackError as error:
        err.print(f"[red]{command}:[/red] {error}")
        raise typer.Exit(2) from None
    if state is None:
        err.print(
            f"[red]{command}:[/red] set TRACE_TOKEN (and {_URL_VARIABLE[service]}), or start the stack with "
            "`trace dev up`"
        )
        raise typer.Exit(2)
    return (state.dispatcher_url if service == "dispatcher" else state.query_url), state.admin_token
