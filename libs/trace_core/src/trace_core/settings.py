"""Process settings, read from `TRACE_*` environment variables (and `.env` when present)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


# Good enough on one machine; any other TRACE_ENV must set its own TRACE_SERVICE_TOKEN.
LOCAL_SERVICE_TOKEN = "trace-local-service-token"  # noqa: S105


class Settings(BaseSettings):
    """Every knob of every Trace process; each field is `TRACE_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRACE_", env_file=".env", extra="ignore")

    env: str = Field("local", description="Deployment environment name; also the first segment of secret paths.")
    home: Path = Field(Path(".trace"), description="Local state: embedded Postgres data, object store, dev.json.")
    database_url: str | None = Field(
        None, description="Postgres DSN. Unset: an embedded Postgres (pgserver) under `{home}/pgdata`."
    )
    db_pool_min_size: int = Field(2, ge=1, description="Smallest size of each service's connection pool.")
    db_pool_max_size: int = Field(10, ge=1, description="Largest size of each service's connection pool.")
    log_format: LogFormat = Field(LogFormat.CONSOLE, description="`console` (readable) or `json` (production).")
    log_level: str = Field("INFO", description="Lowest log level emitted.")
    service_token: SecretStr = Field(
        SecretStr(LOCAL_SERVICE_TOKEN),
        description="Credential platform components present on `/internal/*`; set a real secret in production.",
    )
    dispatcher_host: str = Field("127.0.0.1", description="Interface the dispatcher binds to.")
    dispatcher_port: int = Field(8710, description="Port the dispatcher listens on.")
    dispatcher_url: str = Field("http://127.0.0.1:8710", description="Where other components reach the dispatcher.")
    migrate_on_start: bool = Field(True, description="Apply pending migrations when a service starts.")

    @model_validator(mode="after")
    def _no_default_credential_outside_local(self) -> Self:
        if self.env != "local" and self.service_token.get_secret_value() == LOCAL_SERVICE_TOKEN:
            raise ValueError(f"TRACE_SERVICE_TOKEN must be set when TRACE_ENV is {self.env!r} (not 'local')")
        return self

    @property
    def embedded_pgdata(self) -> Path:
        return self.home.resolve() / "pgdata"
