"""Operator child processes: started with a scrubbed environment, reused task after task, replaced when
killed (cancel, timeout) or when they die. A child may also run several tasks of one org's DAG at once, one per
lane (`SharedChild`), for the built-in operators that gain from sharing a process (`cryo_ingest`)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
from collections.abc import Hashable

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


ChildAnswer = (
    Emit | WriteOutput | NeedInput | LoadState | SaveState | NeedQueryInputs | QueryResultWritten | Done | Ready
)


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

    async def receive(self) -> ChildAnswer:
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
        self._shared: dict[Hashable, SharedChild] = {}

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

    async def acquire_lane(self, key: Hashable) -> Lane:
        """A lane of the child shared by the tasks of `key` (an org's DAG and operator) running now; the first task
        of a key takes an idle child for them, the last one to finish gives it back."""
        shared = self._shared.get(key)
        if shared is None or not shared.alive:
            shared = self._shared[key] = SharedChild(await self.acquire())
        return shared.open_lane()

    async def release_lane(self, key: Hashable, lane: Lane) -> None:
        shared = lane.shared
        shared.close_lane(lane)
        if shared.lanes:
            return
        if self._shared.get(key) is shared:
            del self._shared[key]
        await self.release(await shared.stop())

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().kill()


class SharedChild:
    """A child running several tasks at once, each on a lane: one reader hands each message to its lane. When the
    child dies or is killed (a lane's task timed out or was canceled), every lane's task ends with it."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.lanes: dict[int, asyncio.Queue[ChildAnswer | ChildDiedError]] = {}
        self._numbers = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return self.child.alive and not self._reader.done()

    def open_lane(self) -> Lane:
        number = next(self._numbers)
        self.lanes[number] = asyncio.Queue()
        return Lane(self, number)

    def close_lane(self, lane: Lane) -> None:
        del self.lanes[lane.number]

    async def _read(self) -> None:
        while True:
            try:
                message = await self.child.receive()
            except ChildDiedError as died:
                for queue in self.lanes.values():
                    queue.put_nowait(died)
                return
            lane = self.lanes.get(getattr(message, "lane", 0))
            if lane is not None:  # else its task has ended already (it was killed)
                lane.put_nowait(message)

    async def stop(self) -> Child:
        """Stop reading (no lane is open, so nothing is on its way) and give the child back."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        return self.child


class Lane:
    """One task's view of a shared child, with `Child`'s interface: what it sends goes out tagged with the lane, it
    receives its own messages, and killing it kills the child (the other lanes' tasks end too)."""

    def __init__(self, shared: SharedChild, number: int) -> None:
        self.shared = shared
        self.number = number

    @property
    def workdir(self) -> str:
        return self.shared.child.workdir

    async def send(self, message: RunTask | InputReady | QueryInputsReady | StateLoaded | StateSaved) -> None:
        if not isinstance(message, RunTask):
            raise TypeError(f"a task sharing its operator process is sent nothing but its task, not {message.kind}")
        await self.shared.child.send(message.model_copy(update={"lane": self.number}))

    async def receive(self) -> ChildAnswer:
        answer = await self.shared.lanes[self.number].get()
        if isinstance(answer, ChildDiedError):
            raise answer
        return answer

    async def kill(self) -> None:
        await self.shared.child.kill()
