"""Operator child processes: started with a scrubbed environment, reused task after task, replaced when
killed (cancel, timeout) or when they die."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile

from pydantic import TypeAdapter

from trace_core.contracts.operator import (
    ChildMessage,
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

_MESSAGE = TypeAdapter(ChildMessage)
# Variables a child keeps from the wrapper's environment; everything else (TRACE_*, AWS_*, …) is dropped.
_INHERITED = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")
_STREAM_LIMIT = 64 * 1024 * 1024


class ChildDiedError(RuntimeError):
    """The child exited (or was killed) before finishing its task."""


class Child:
    def __init__(self, process: asyncio.subprocess.Process, workdir: str) -> None:
        self.process = process
        self.workdir = workdir

    @classmethod
    async def start(cls, udf_path: str = "") -> Child:
        workdir = tempfile.mkdtemp(prefix="trace-operator-")
        env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
        env["HOME"] = workdir
        search_path = [part for part in (udf_path, env.get("PYTHONPATH", "")) if part]
        if search_path:
            env["PYTHONPATH"] = os.pathsep.join(search_path)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=workdir,
            limit=_STREAM_LIMIT,
            start_new_session=True,  # a signal to the wrapper's group does not hit operators mid-task
        )
        child = cls(process, workdir)
        first = await child.receive()
        if not isinstance(first, Ready):
            raise ChildDiedError(f"operator process did not start: {first!r}")
        return child

    async def send(self, message: RunTask | InputReady | QueryInputsReady | StateLoaded | StateSaved) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(message.model_dump_json().encode() + b"\n")
        await self.process.stdin.drain()

    async def receive(
        self,
    ) -> Emit | WriteOutput | NeedInput | LoadState | SaveState | NeedQueryInputs | QueryResultWritten | Done | Ready:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise ChildDiedError(f"the operator process exited with code {code}")
        return _MESSAGE.validate_json(line)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        _remove_tree(self.workdir)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class ChildPool:
    """Idle children ready for the next task, so a task does not pay for an interpreter start. The child idle the
    shortest time goes first: it has imported what the recent tasks' operators need (cryo, pyarrow, DuckDB…), so a
    worker with more children than tasks at a time does not make every child pay for the imports."""

    def __init__(self, size: int, udf_path: str = "") -> None:
        self._size = size
        self._udf_path = udf_path
        self._idle: asyncio.LifoQueue[Child] = asyncio.LifoQueue()

    async def start(self) -> None:
        children = await asyncio.gather(*(Child.start(self._udf_path) for _ in range(self._size)))
        for child in children:
            self._idle.put_nowait(child)

    async def acquire(self) -> Child:
        child = await self._idle.get()
        return child if child.alive else await Child.start(self._udf_path)

    async def release(self, child: Child) -> None:
        """Return a healthy child; a dead or killed one is replaced."""
        self._idle.put_nowait(child if child.alive else await Child.start(self._udf_path))

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().kill()
