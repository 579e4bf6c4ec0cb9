"""The operator child process: runs one task at a time, as the wrapper asks, over stdin/stdout.

It starts with a scrubbed environment, is told each task without the attempt token, and talks only to the
wrapper. What the operator prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import os
import sys
import traceback
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.operator import (
    Done,
    Emit,
    InputReady,
    NeedInput,
    NeedQueryInputs,
    QueryInputsReady,
    Ready,
    RunTask,
    WriteOutput,
)
from worker.operators import OperatorContext, OperatorError, registry

MAX_ERROR_CHARS = 8_000


def _send(out: IO[str], message: BaseModel) -> None:
    out.write(message.model_dump_json() + "\n")
    out.flush()


def run_one(message: RunTask, out: IO[str], base_env: dict[str, str]) -> Done:
    os.environ.clear()
    os.environ.update(base_env)
    os.environ.update(message.env)
    operator = registry().get(message.task.job.operator)
    if operator is None:
        return Done(status="failed", error=f"unknown operator {message.task.job.operator!r}", retryable=False)

    def write(table: pa.Table, output: int, scope: EventScope) -> None:
        path = Path.cwd() / f"output-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, path)
        _send(out, WriteOutput(output=output, scope=scope, path=str(path), rows=table.num_rows))

    def read_input() -> pa.Table:
        _send(out, NeedInput())
        answer = InputReady.model_validate_json(sys.stdin.readline())
        if answer.path is None:
            raise OperatorError(f"read_input: {answer.error}")
        try:
            return pq.read_table(answer.path)
        finally:
            Path(answer.path).unlink(missing_ok=True)

    def query_inputs() -> QueryInputsReady:
        _send(out, NeedQueryInputs())
        answer = QueryInputsReady.model_validate_json(sys.stdin.readline())
        if answer.root is None:
            raise OperatorError(f"staging the query's datasets failed: {answer.error}")
        return answer

    ctx = OperatorContext(
        message.task,
        lambda event: _send(out, Emit(event=event)),
        write,
        read_input,
        query_inputs,
        lambda written: _send(out, written),
    )
    try:
        result: Iterable[object] | None = operator(ctx)
        for item in result or ():
            ctx.emit(item if isinstance(item, EmittedEvent) else EmittedEvent.model_validate(item))
    except OperatorError as error:
        return Done(status="failed", error=str(error), retryable=error.retryable)
    except ValidationError as error:
        return Done(status="failed", error=f"the operator emitted an invalid event: {error}", retryable=False)
    except Exception:  # the operator's own bug: report it, stay alive for the next task
        return Done(status="failed", error=traceback.format_exc()[-MAX_ERROR_CHARS:])
    return Done(status="succeeded")


def main() -> None:
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # operator output goes to stderr
    base_env = dict(os.environ)
    _send(protocol_out, Ready(pid=os.getpid()))
    for line in sys.stdin:
        if line.strip():
            _send(protocol_out, run_one(RunTask.model_validate_json(line), protocol_out, base_env))


if __name__ == "__main__":
    main()
