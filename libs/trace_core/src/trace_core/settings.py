"""Process settings, read from `TRACE_*` environment variables (and `.env` when present)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

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
    transport: Literal["embedded", "sqs"] = Field(
        "embedded", description="How `ecs_python` task ids reach workers: `embedded` (workers poll) or `sqs`."
    )
    lambda_transport: Literal["embedded", "lambda"] = Field(
        "embedded", description="How `lambda_py` tasks run: `embedded` (local workers poll) or `lambda` (invoke)."
    )
    sqs_queue_url_prefix: str = Field(
        "", description="SQS transport: queue URL prefix; a runtime's queue is `{prefix}{runtime}`."
    )
    lambda_function_prefix: str = Field(
        "trace-", description="Lambda transport: a runtime's function is `{prefix}{runtime}`."
    )
    object_store: str = Field(
        "", description="Where Parquet lives: a local directory or `s3://bucket/prefix`. Empty: `{home}/objects`."
    )
    aws_endpoint_url: str | None = Field(None, description="AWS endpoint override (moto's server in tests).")
    aws_region: str = Field("us-east-1", description="AWS region of SQS, Lambda and Secrets Manager.")
    lease_s: float = Field(30, gt=0, description="An attempt's lease; each heartbeat extends it by this much.")
    heartbeat_interval_s: float = Field(5, gt=0, description="How often workers heartbeat a running attempt.")
    dispatch_timeout_s: float = Field(
        120, gt=0, description="A dispatched task whose attempt has not started by then goes back to the queue."
    )
    retry_base_s: float = Field(2, ge=0, description="Retry backoff: base * 2^(attempt-1), with jitter.")
    retry_max_s: float = Field(300, ge=0, description="Retry backoff ceiling.")
    inflight_limit: int = Field(
        256, ge=1, description="Tasks of one runtime handed to the transport and not finished, at most."
    )
    scheduler_batch: int = Field(500, ge=1, description="Tasks the scheduler dispatches per pass, at most.")
    router_batch: int = Field(1000, ge=1, description="Events the router turns into tasks per pass, at most.")
    operator_batch: int = Field(
        1000,
        ge=1,
        description="Queued tasks per job of the operators the dispatcher runs itself (range_aggregator, "
        "range_splitter) that one pass applies in one transaction, at most.",
    )
    operator_pass_events: int = Field(
        100_000,
        ge=1,
        description="A pass of those operators stops taking a job's tasks once they emitted this many events (it "
        "takes one at least): a splitter's range can be 100,000 units.",
    )
    router_applies_operators: bool = Field(
        True,
        description="The router applies the tasks of those operators in the pass that makes them (false: it "
        "queues them for the operator loop, as for a job with a queued task).",
    )
    dispatcher_loops: bool = Field(True, description="Campaign for the leader lock and run the loops.")
    loop_coalesce_s: float = Field(
        0.005, ge=0, description="Pause after a busy router or scheduler pass, so the next one takes more at once."
    )
    loop_sweep_s: float = Field(1.0, gt=0, description="Loops run at least this often without a notification.")
    cutover_lag_s: float = Field(
        10,
        ge=0,
        description="A rebuild cuts over once it has caught up with a target set at most this long ago; "
        "otherwise it sets a new target (the input's head) and catches up again.",
    )
    backfill_batch: int = Field(
        50_000, ge=1, description="Input events a rebuild turns into its tasks per transaction, at most."
    )
    worker_runtime: str = Field("ecs_python", description="Runtime a worker serves.")
    worker_concurrency: int = Field(4, ge=1, description="Tasks one worker runs at once (child processes).")
    worker_id: str | None = Field(None, description="Worker name in attempts; default host:pid.")
    udf_path: str = Field(
        "", description="Directories (colon-separated) where operator children import user functions from."
    )
    worker_drain_s: float = Field(30, ge=0, description="On SIGTERM, how long running tasks may take to finish.")
    sqs_wait_s: int = Field(10, ge=0, le=20, description="SQS long-poll wait of a worker.")
    query_host: str = Field("127.0.0.1", description="Interface the Query Service binds to.")
    query_port: int = Field(8711, description="Port the Query Service listens on.")
    query_url: str = Field("http://127.0.0.1:8711", description="Where clients reach the Query Service.")
    query_concurrency: int = Field(
        8, ge=1, description="Queries one Query Service process runs at once; more wait for a free slot."
    )
    query_batch_concurrency: int = Field(
        2, ge=1, description="Batch queries of one org that run at once (a dispatcher setting); more wait queued."
    )
    devchain_port: int = Field(
        8545, description="Port of the devchain that `trace dev up` starts (JSON-RPC and control)."
    )
    devchain_block_time_ms: int = Field(
        250, ge=1, description="`trace dev up`'s devchain mines one block this often (milliseconds)."
    )

    @model_validator(mode="after")
    def _no_default_credential_outside_local(self) -> Self:
        if self.env != "local" and self.service_token.get_secret_value() == LOCAL_SERVICE_TOKEN:
            raise ValueError(f"TRACE_SERVICE_TOKEN must be set when TRACE_ENV is {self.env!r} (not 'local')")
        return self

    @property
    def embedded_pgdata(self) -> Path:
        return self.home.resolve() / "pgdata"
