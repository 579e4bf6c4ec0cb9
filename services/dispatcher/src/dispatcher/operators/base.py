"""What an operator the dispatcher runs itself sees and returns (SPEC §10, docs/chain.md).

Such an operator is a pure function over one job's queued tasks, in event order: `run(config, state, inputs)`
gets the job's config, its stored operator state (None before the first save, and for stateless operators) and
each task's input event, and returns the state to store and one outcome per task: the events it emits, or why it
failed. The dispatcher loop (`loops/operators.py`) does the I/O: it locks the tasks and the state, stores the
state with the events in one transaction, and records each task's attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from trace_core.contracts.events import EmittedEvent, EventKind


@dataclass(frozen=True, slots=True)
class InputEvent:
    """A task's input event, as these operators read it: its kind and its range (None when it has none)."""

    kind: EventKind
    range: tuple[int, int] | None


class TaskError(Exception):
    """Why a task failed. These operators are deterministic, so another attempt would fail the same way: the task
    fails without a retry."""


Outcome: TypeAlias = list[EmittedEvent] | TaskError
State: TypeAlias = dict[str, Any] | None
Run: TypeAlias = Callable[[dict[str, Any], State, Sequence[InputEvent | None]], tuple[State, list[Outcome]]]
