"""`sql`: a declarative transform, `config: {query: "select … from input …"}` (SPEC §10).

DuckDB runs the query over `input`, the rows of the input event's scope; the result goes to output 0 for the
same scope. The connection has no file or network access: `input` is the only data it sees.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from worker.operators import EventLike, OperatorContext, OperatorError


def run(ctx: OperatorContext) -> Iterable[EventLike] | None:
    query = ctx.config.get("query")
    if not isinstance(query, str) or not query.strip():
        raise OperatorError("config.query must be a SQL query over `input`", retryable=False)
    rows = ctx.read_input()
    with duckdb.connect() as conn:
        conn.register("input", rows)
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
        try:
            result = conn.execute(query).arrow().read_all()
        except duckdb.Error as error:
            raise OperatorError(f"config.query: {error}", retryable=False) from None
    ctx.write(result)
    return None
