"""Resolving a slot's `secret_env` references into values for the operator's environment.

The local backend reads `{TRACE_HOME}/secrets/{env}/{org_id}/{path}` (the Secret Writer service and AWS
Secrets Manager come with the secrets issue). Platform secrets are given only to platform operators.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from worker.operators import OperatorError

PLATFORM_OPERATORS = frozenset({"cryo_ingest", "block_follower", "duckdb_query", "alert_route"})


def resolve_secret_env(
    secret_env: dict[str, str], *, home: Path, env: str, org_id: UUID, operator: str
) -> dict[str, str]:
    values: dict[str, str] = {}
    for variable, path in secret_env.items():
        if path.startswith("platform/") and operator not in PLATFORM_OPERATORS:
            raise OperatorError(
                f"secret_env.{variable}: {path!r} is a platform secret; operator {operator!r} may not read it",
                retryable=False,
            )
        file = home / "secrets" / env / str(org_id) / path
        try:
            values[variable] = file.read_text().strip()
        except OSError:
            raise OperatorError(f"secret_env.{variable}: secret {path!r} does not exist", retryable=False) from None
    return values
