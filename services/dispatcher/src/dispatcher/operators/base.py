"""What an operator the dispatcher runs itself sees and returns (SPEC §10, docs/chain.md).

Such an operator is pure arithmetic over one job's queued tasks, in event order. `start(config, state)` begins a
pass over the job with its config and stored operator state (None before the first save, and for stateless
operators); the pass's `apply(event)` runs one task on its input event and returns the events it emits, or raises
`TaskError`; `state()` is what to store once the pass took the tasks it takes. The dispatcher loop
(`loops/operators.py`) does the I/O: it locks the tasks and the state, stores the state with the events in one
transaction, and records each task's attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from trace_core.contracts.events import EmittedEvent, EventKind
from trace_core.dag.operators import Config, parse_config


@dataclass(frozen=True, slots=True)
class InputEvent:
    """A task's input event, as these operators read it: its kind and its range (None when it has none)."""

    kind: EventKind
    range: tuple[int, int] | None


class TaskError(Exception):
    """Why a task failed. These operators are deterministic, so another attempt would fail the same way: the task
    fails without a retry."""


State: TypeAlias = dict[str, Any] | None


def job_config(model: type[Config], operator: str, config: dict[str, Any]) -> Config:
    """The job's config as the operator's model (the DAG validation checked it with the same one); `TaskError`
    naming each problem otherwise."""
    try:
        return parse_config(model, operator, config)
    except ValueError as error:
        raise TaskError(f"{operator}: {error}") from None


class OperatorPass(Protocol):
    def apply(self, event: InputEvent | None) -> list[EmittedEvent]:
        """Run one task (the next in event order); `TaskError` fails it and leaves the state as it was."""

    def state(self) -> State:
        """The state the tasks applied so far leave."""


# `start(config, stored state)`; raises `TaskError` when the config does not parse (every task of the pass fails)
Start: TypeAlias = Callable[[dict[str, Any], State], OperatorPass]
