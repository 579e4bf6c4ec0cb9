"""The local stack behind `trace dev up` / `trace dev down`: embedded Postgres, migrations, services, and the
devchain mining a block every TRACE_DEVCHAIN_BLOCK_TIME_MS.

`{TRACE_HOME}/dev.json` records what is running: every service URL and pid, the database URL and a
bootstrap admin token, so other terminals (and tests) can find the stack. `{TRACE_HOME}/devchain.json` keeps the
devchain's seed and height across restarts: the chain is a function of its seed and of the blocks mined (the dev
stack never reorgs it), so the next `up` mines it back to that height and a DAG that followed it finds the same
blocks again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from trace_core.auth.repository import OrgExistsError, bootstrap_org, issue_user_token
from trace_core.db.embedded import start_embedded_postgres, stop_embedded_postgres
from trace_core.db.migrate import migrate_url
from trace_core.settings import Settings

DEV_ORG = "dev"
DEV_ADMIN = "admin"
DEVCHAIN_SEED = 1
DEVCHAIN_INITIAL_BLOCKS = 100  # so the main job has ranges to extract at once
# the URL the example DAGs name; `deploy_main_job` points it at the devchain actually started
EXAMPLE_RPC_URL = "http://127.0.0.1:8545"
MAIN_JOB = Path("examples") / "eth_devchain.yaml"


class DevStackError(RuntimeError):
    """The stack cannot be started or stopped; the message says why and what to do."""


@dataclass
class DevState:
    home: str
    database_url: str
    embedded_postgres: bool
    org: str
    admin_token: str
    dispatcher_url: str
    query_url: str
    devchain_url: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    @classmethod
    def path(cls, home: Path) -> Path:
        return home / "dev.json"

    @classmethod
    def read(cls, home: Path) -> DevState | None:
        try:
            return cls(**json.loads(cls.path(home).read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as error:
            raise DevStackError(f"{cls.path(home)} is not a dev state file ({error}); remove it") from None

    def write(self) -> None:
        path = self.path(Path(self.home))
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        path.chmod(0o600)  # it holds an admin token


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def _bootstrap_token(database_url: str) -> str:
    """The dev org's admin token: bootstrap the org on first use, else issue the admin a fresh token."""
    import psycopg
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        try:
            _, token = await bootstrap_org(conn, DEV_ORG, DEV_ADMIN)
        except OrgExistsError:
            issued = await issue_user_token(conn, DEV_ORG, DEV_ADMIN, label="dev up")
            if issued is None:
                raise DevStackError(f"org {DEV_ORG!r} exists without user {DEV_ADMIN!r}") from None
            token = issued
    return token.secret


def _spawn(name: str, argv: list[str], home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path = home / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            argv,
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the terminal of `trace dev up --detach`
        )


def _wait_ready(name: str, process: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise DevStackError(f"{name} exited with code {process.returncode} while starting:\n{tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise DevStackError(f"{name} was not ready at {url} after {timeout_s:.0f}s; see {log_path}")


def up(settings: Settings) -> DevState:
    """Start the stack in the background and record it; the caller decides whether to wait on it."""
    import asyncio

    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    existing = DevState.read(home)
    if existing is not None and any(_alive(pid) for pid in existing.pids.values()):
        raise DevStackError(f"a dev stack is already running (see {DevState.path(home)}); run `trace dev down`")
    for host, port, variable in (
        (settings.dispatcher_host, settings.dispatcher_port, "TRACE_DISPATCHER_PORT"),
        (settings.query_host, settings.query_port, "TRACE_QUERY_PORT"),
        ("127.0.0.1", settings.devchain_port, "TRACE_DEVCHAIN_PORT"),
    ):
        if not _port_free(host, port):
            raise DevStackError(f"port {port} on {host} is in use; stop what holds it or set {variable}")
    embedded = settings.database_url is None
    database_url = start_embedded_postgres(settings.embedded_pgdata) if embedded else str(settings.database_url)
    asyncio.run(migrate_url(database_url))
    token = asyncio.run(_bootstrap_token(database_url))

    dispatcher_url = f"http://{settings.dispatcher_host}:{settings.dispatcher_port}"
    query_url = f"http://{settings.query_host}:{settings.query_port}"
    env = {
        "TRACE_HOME": str(home),
        "TRACE_DATABASE_URL": database_url,
        "TRACE_DISPATCHER_URL": dispatcher_url,
        "TRACE_MIGRATE_ON_START": "false",  # done above, once
        "TRACE_UDF_PATH": settings.udf_path or str(Path.cwd()),
        # a fresh service credential per stack, known only to the platform processes (not written anywhere)
        "TRACE_SERVICE_TOKEN": secrets.token_urlsafe(32),
    }
    dispatcher = _spawn("dispatcher", _module("dispatcher"), home, env)
    state = DevState(
        home=str(home),
        database_url=database_url,
        embedded_postgres=embedded,
        org=DEV_ORG,
        admin_token=token,
        dispatcher_url=dispatcher_url,
        query_url=query_url,
        pids={"dispatcher": dispatcher.pid},
    )
    state.write()
    try:
        _wait_ready("dispatcher", dispatcher, f"{dispatcher_url}/readyz", home / "logs" / "dispatcher.log", 30)
        query = _spawn("query-service", _module("query_service"), home, env)
        state.pids["query-service"] = query.pid
        state.write()
        _wait_ready("query-service", query, f"{query_url}/healthz", home / "logs" / "query-service.log", 30)
        for runtime in ("ecs_python", "lambda_py"):
            worker = _spawn(f"worker-{runtime}", _module("worker"), home, {**env, "TRACE_WORKER_RUNTIME": runtime})
            state.pids[f"worker-{runtime}"] = worker.pid
        state.write()
        _start_devchain(settings, home, state)
    except DevStackError:
        down(settings)
        raise
    return state


def _module(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def _devchain_height(home: Path) -> int:
    """The height the last stack's devchain reached, when it had the same seed."""
    try:
        saved = json.loads((home / "devchain.json").read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return int(saved["head"]) if saved.get("seed") == DEVCHAIN_SEED else 0


def _start_devchain(settings: Settings, home: Path, state: DevState) -> None:
    from devchain import launch

    initial = max(DEVCHAIN_INITIAL_BLOCKS, _devchain_height(home))
    argv = launch.command(
        settings.devchain_port, DEVCHAIN_SEED, initial_blocks=initial, block_time_ms=settings.devchain_block_time_ms
    )
    devchain = _spawn("devchain", argv, home, {})
    state.pids["devchain"] = devchain.pid
    state.devchain_url = f"http://127.0.0.1:{settings.devchain_port}"
    state.write()
    try:
        launch.wait_ready(state.devchain_url, devchain, home / "logs" / "devchain.log", timeout_s=120)
    except launch.DevchainStartError as error:
        raise DevStackError(str(error)) from None


def deploy_main_job(state: DevState, path: Path = MAIN_JOB) -> str:
    """Deploy the main job (examples/eth_devchain.yaml) against the stack's devchain; what happened, in words."""
    if not path.is_file():
        return f"{path} not found (run from the repository root to deploy the main job)"
    auth = {"Authorization": f"Bearer {state.admin_token}"}
    existing = httpx.get(f"{state.dispatcher_url}/v1/dags/eth_devchain", headers=auth, timeout=30)
    if existing.status_code == 200:
        # a stack restarted on the same TRACE_HOME: restart the follower's run at once (a new attempt of the same
        # task, so what it emits again dedupes) rather than wait for the old attempt's lease to run out
        restarted = httpx.post(
            f"{state.dispatcher_url}/v1/dags/eth_devchain/jobs/blocks/runs", headers=auth, timeout=30
        )
        if restarted.status_code >= 400:
            raise DevStackError(
                f"restarting eth_devchain's follower was refused ({restarted.status_code}): {restarted.text}"
            )
        version = existing.json()["active_version"]
        return f"eth_devchain is deployed already (version {version}); its follower run was {restarted.json()['run']}"
    text = path.read_text().replace(EXAMPLE_RPC_URL, state.devchain_url)
    answer = httpx.post(
        f"{state.dispatcher_url}/v1/dags",
        content=text,
        headers={**auth, "Content-Type": "application/yaml"},
        timeout=60,
    )
    if answer.status_code >= 400:
        raise DevStackError(f"deploying {path} was refused ({answer.status_code}): {answer.text}")
    return f"deployed {path} (dag eth_devchain)"


def down(settings: Settings) -> list[str]:
    """Stop everything `up` started; returns what was stopped."""
    home = settings.home.resolve()
    state = DevState.read(home)
    stopped: list[str] = []
    if state is not None and state.devchain_url:
        from devchain import launch

        try:  # remember the height, so the next stack serves the same chain up to here
            height = launch.head(state.devchain_url)["number"]
            (home / "devchain.json").write_text(json.dumps({"seed": DEVCHAIN_SEED, "head": height}) + "\n")
        except (OSError, ValueError, KeyError):  # a devchain that is gone or garbled: the next one starts anew
            pass
    if state is not None:
        for name, pid in sorted(state.pids.items(), key=lambda item: item[0] == "dispatcher"):
            if _stop_process_group(pid):
                stopped.append(name)
    if (state is None or state.embedded_postgres) and stop_embedded_postgres(settings.embedded_pgdata):
        stopped.append("postgres")
    DevState.path(home).unlink(missing_ok=True)
    return stopped


def _stop_process_group(pid: int, grace_s: float = 10) -> bool:
    if not _alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(pid) or _reap(pid):
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


def _reap(pid: int) -> bool:
    """Collect a child of this process that exited (a zombie still answers kill(pid, 0))."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid
