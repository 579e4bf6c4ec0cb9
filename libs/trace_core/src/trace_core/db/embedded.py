"""The embedded Postgres: a `pgserver` cluster under `{TRACE_HOME}/pgdata`, used when no DSN is configured."""

from __future__ import annotations

import os
import warnings
from pathlib import Path


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or join) the cluster at `pgdata` and return its DSN; it keeps running after this process."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver only uses it for a lock file.
        warnings.simplefilter("ignore")
        import pgserver

    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    return uri


def stop_embedded_postgres(pgdata: Path) -> bool:
    """Stop the cluster at `pgdata`; False when none was running there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    pgserver.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=_cluster_owner())  # type: ignore[attr-defined]
    return True


def _cluster_owner() -> str | None:
    # pgserver runs the server as the system user `pgserver` when started by root (postgres refuses root).
    return "pgserver" if os.geteuid() == 0 else None
