"""Requests of the deploy lifecycle's public API (SPEC §6)."""

from __future__ import annotations

from pydantic import Field

from trace_core.contracts._base import Contract


class RollbackRequest(Contract):
    """`POST /v1/dags/{dag}/rollback`: restore `to_version` (a version that served before), or by default the
    version that served before the active one; during a rebuild, without `to_version`, abort the rebuild."""

    to_version: int | None = Field(None, ge=1)
