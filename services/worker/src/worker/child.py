"""The operator child process: runs the tasks the wrapper gives it over stdin/stdout.

It starts with a scrubbed environment, is told each task without the attempt token, and talks only to the
wrapper. What the operator prints goes to stderr, so it cannot corrupt the protocol.

A task on lane 0 runs alone, in the main thread, and may ask the wrapper for its input, state or query datasets.
Tasks on other lanes (the wrapper gives them only to operators that write files and emit events: `cryo_ingest`)
run at once, each in a thread of its own, with their messages tagged with their lane; they share the process's
libraries and their pools (cryo's tokio runtime, polars' threads), which is what sharing a child is for.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
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
    QueryResultWritten,
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


Send = Callable[[BaseModel, bool], None]


def run_one(message: RunTask, out: IO[str], base_env: dict[str, str]) -> Done:
    """Run a lane-0 task: alone in the process, with the slot's environment as the process's own."""
    os.environ.clear()
    os.environ.update(base_env)
    os.environ.update(message.env)
    return _run(message, lambda reply, flush: _send(out, reply, flush), os.environ)


def _run(message: RunTask, send: Send, env: Mapping[str, str]) -> Done:
    """Run the task's operator. Only a lane-0 task may ask the wrapper for something: the answer comes on stdin,
    which the main thread reads for the next tasks while tasks on other lanes run."""
    operator = load_operator(message.task.job.operator)
    if operator is None:
        return Done(status="failed", error=f"unknown operator {message.task.job.operator!r}", retryable=False)

    def ask(request: NeedInput | LoadState | SaveState | NeedQueryInputs, model: type[Answer]) -> Answer:
        if message.lane:
            raise OperatorError(f"{request.kind}: a task sharing its operator process cannot ask", retryable=False)
        send(request, True)
        return _answer(model)

    def write(path: Path, rows: int, output: int, scope: EventScope) -> None:
        send(WriteOutput(output=output, scope=scope, path=str(path), rows=rows, lane=message.lane), True)

    def read_input() -> pa.Table:
        answer = ask(NeedInput(), InputReady)
        if answer.path is None:
            raise OperatorError(f"read_input: {answer.error}")
        try:
            return pq.read_table(answer.path)
        finally:
            Path(answer.path).unlink(missing_ok=True)

    def load_state() -> StoredState:
        answer = ask(LoadState(), StateLoaded)
        if answer.error is not None:
            raise OperatorError(f"load_state: {answer.error}")
        return StoredState(answer.state, answer.revision)

    def save_state(state: dict[str, Any], revision: int, events: list[EmittedEvent]) -> int:
        answer = ask(SaveState(expected_revision=revision, state=state, events=events), StateSaved)
        if answer.conflict:
            raise StateConflictError(f"save_state: the operator state is at revision {answer.revision}, not {revision}")
        if answer.error is not None:
            raise OperatorError(f"save_state: {answer.error}", retryable=answer.retryable)
        return answer.revision

    def query_inputs() -> QueryInputsReady:
        answer = ask(NeedQueryInputs(), QueryInputsReady)
        if answer.root is None:
            raise OperatorError(f"staging the query's datasets failed: {answer.error}")
        return answer

    def store_query_result(written: QueryResultWritten) -> None:
        if message.lane:
            raise OperatorError("query_result: a task sharing its operator process has no query", retryable=False)
        send(written, True)

    ctx = OperatorContext(
        message.task,
        lambda event: send(Emit(event=event, lane=message.lane), True),
        write,
        read_input,
        query_inputs,
        store_query_result,
        load_state,
        save_state,
        env,
    )
    try:
        result: Iterable[object] | None = operator(ctx)
        # events returned all at once go out with the outcome, in one write (one wake-up of the wrapper instead of
        # one per event); a generator's are sent as it yields them
        returned = isinstance(result, list | tuple)
        for item in result or ():
            event = item if isinstance(item, EmittedEvent) else EmittedEvent.model_validate(item)
            send(Emit(event=event, lane=message.lane), not returned)
    except OperatorError as error:
        return Done(status="failed", error=str(error), retryable=error.retryable, lane=message.lane)
    except ValidationError as error:
        return Done(
            status="failed", error=f"the operator emitted an invalid event: {error}", retryable=False, lane=message.lane
        )
    except Exception:  # the operator's own bug: report it, stay alive for the next task
        return Done(status="failed", error=traceback.format_exc()[-MAX_ERROR_CHARS:], lane=message.lane)
    return Done(status="succeeded", lane=message.lane)


def _run_on_lane(message: RunTask, out: IO[str], lock: threading.Lock, base_env: dict[str, str]) -> None:
    """Run a task beside others (its own thread), with its slot's environment over the child's in `ctx.env` (the
    process's own stays the child's: the tasks' slots differ)."""

    def send(reply: BaseModel, flush: bool) -> None:
        with lock:  # whole lines: a line left unflushed goes out with the next flush of any lane
            _send(out, reply, flush)

    send(_run(message, send, base_env | message.env), True)


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
    lock = threading.Lock()  # one message at a time on the protocol stream
    for line in sys.stdin:
        if not line.strip():
            continue
        message = RunTask.model_validate_json(line)
        if message.lane:
            threading.Thread(target=_run_on_lane, args=(message, protocol_out, lock, base_env), daemon=True).start()
        else:
            _send(protocol_out, run_one(message, protocol_out, base_env))


if __name__ == "__main__":
    main()
