"""`python`: a user function, `config: {function: "package.module:function", …}`.

The function receives the input event (None for a source run) and, when it takes a second argument, the
job's config. It returns events, or yields them to emit each at once (a long-running source does that).
An item `{"rows": [...], "output": 0, "scope": {...}}` writes rows to an output instead (`output` defaults to
0, `scope` to the input event's scope), and emits the output's data event for that scope.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from worker.operators import EventLike, OperatorContext, OperatorError


def load_function(spec: object) -> Callable[..., Any]:
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise OperatorError(f"config.function must be 'module:function', got {spec!r}", retryable=False)
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise OperatorError(f"config.function: cannot import {module_name!r}: {error}", retryable=False) from None
    function: Callable[..., Any] | None = getattr(module, attribute, None)
    if not callable(function):
        raise OperatorError(f"config.function: {module_name!r} has no function {attribute!r}", retryable=False)
    return function


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    function = load_function(ctx.config.get("function"))
    event = ctx.task.input_event.model_dump(mode="json") if ctx.task.input_event else None
    takes_config = len(inspect.signature(function).parameters) >= 2
    result: Iterable[EventLike] | dict[str, Any] | None = (
        function(event, ctx.config) if takes_config else function(event)
    )
    if result is None:
        return None
    if isinstance(result, dict):
        raise OperatorError("the function returned a dict; return a list of events (or yield them)", retryable=False)
    return _writing_rows(ctx, result)


def _writing_rows(ctx: OperatorContext, items: Iterable[EventLike]) -> Iterator[EventLike]:
    for item in items:
        if isinstance(item, dict) and "rows" in item:
            unknown = set(item) - {"rows", "output", "scope"}
            if unknown:
                raise OperatorError(f"a rows item takes rows, output and scope; got also {sorted(unknown)}")
            ctx.write(item["rows"], output=item.get("output", 0), scope=item.get("scope"))
        else:
            yield item
