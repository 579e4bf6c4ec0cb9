"""The operator child process: runs one task at a time, as the wrapper asks, over stdin/stdout.

It starts with a scrubbed environment, is told each task without the attempt token, and talks only to the
wrapper. What the operator prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from trace_core.contracts.events import EmittedEvent, EventScope
from trace_core.contracts.operator import (
    Done,
    Emit,
    InputReady,
    LoadState,
    NeedInput,
    NeedQueryInputs,
    QueryInputsReady,
    Ready,
    RunTask,
    SaveState,
    StateLoaded,
    StateSaved,
    WriteOutput,
)
from worker.operators import OperatorContext, OperatorError, StateConflictError, StoredState, load_operator

MAX_ERROR_CHARS = 8_000
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _send(out: IO[str], message: BaseModel, flush: bool = True) -> None:
    out.write(message.model_dump_json() + "\n")
    if flush:
        out.flush()


Answer = TypeVar("Answer", bound=BaseModel)


def _answer(model: type[Answer]) -> Answer:
    """The wrapper's answer to the request just sent."""
    line = sys.stdin.readline()
    if not line:
        raise OperatorError("the worker wrapper went away")
    return model.model_validate_json(line)


def run_one(message: RunTask, out: IO[str], base_env: dict[str, str]) -> Done:
    os.environ.clear()
    os.environ.update(base_env)
    os.environ.update(message.env)
    operator = load_operator(message.task.job.operator)
    if operator is None:
        return Done(status="failed", error=f"unknown operator {message.task.job.operator!r}", retryable=False)

    def write(path: Path, rows: int, output: int, scope: EventScope) -> None:
        _send(out, WriteOutput(output=output, scope=scope, path=str(path), rows=rows))

    def read_input() -> pa.Table:
        _send(out, NeedInput())
        answer = _answer(InputReady)
        if answer.path is None:
            raise OperatorError(f"read_input: {answer.error}")
        try:
            return pq.read_table(answer.path)
        finally:
            Path(answer.path).unlink(missing_ok=True)

    def load_state() -> StoredState:
        _send(out, LoadState())
        answer = _answer(StateLoaded)
        if answer.error is not None:
            raise OperatorError(f"load_state: {answer.error}")
        return StoredState(answer.state, answer.revision)

    def save_state(state: dict[str, Any], revision: int, events: list[EmittedEvent]) -> int:
        _send(out, SaveState(expected_revision=revision, state=state, events=events))
        answer = _answer(StateSaved)
        if answer.conflict:
            raise StateConflictError(f"save_state: the operator state is at revision {answer.revision}, not {revision}")
        if answer.error is not None:
            raise OperatorError(f"save_state: {answer.error}", retryable=answer.retryable)
        return answer.revision

    def query_inputs() -> QueryInputsReady:
        _send(out, NeedQueryInputs())
        answer = _answer(QueryInputsReady)
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
        load_state,
        save_state,
    )
    try:
        result: Iterable[object] | None = operator(ctx)
        # events returned all at once go out with the outcome, in one write (one wake-up of the wrapper instead of
        # one per event); a generator's are sent as it yields them
        returned = isinstance(result, list | tuple)
        for item in result or ():
            event = item if isinstance(item, EmittedEvent) else EmittedEvent.model_validate(item)
            _send(out, Emit(event=event), flush=not returned)
    except OperatorError as error:
        return Done(status="failed", error=str(error), retryable=error.retryable)
    except ValidationError as error:
        return Done(status="failed", error=f"the operator emitted an invalid event: {error}", retryable=False)
    except Exception:  # the operator's own bug: report it, stay alive for the next task
        return Done(status="failed", error=traceback.format_exc()[-MAX_ERROR_CHARS:])
    return Done(status="succeeded")


def _die_with_the_wrapper() -> None:
    """Ask Linux to SIGKILL this process when the wrapper dies. Children run in their own session (a signal to
    the wrapper's group must not hit them mid-task), so a SIGKILLed wrapper would otherwise leave a
    long-running operator (a block_follower polling its node) running with no one to report to."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> None:
    _die_with_the_wrapper()
    protocol_out = os.fdopen(os.dup(1), "w")  # block-buffered: `_send` flushes each message unless told not to
    os.dup2(2, 1)  # operator output goes to stderr
    base_env = dict(os.environ)
    _send(protocol_out, Ready(pid=os.getpid()))
    for line in sys.stdin:
        if line.strip():
            _send(protocol_out, run_one(RunTask.model_validate_json(line), protocol_out, base_env))


if __name__ == "__main__":
    main()
