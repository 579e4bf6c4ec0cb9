"""What a query may say, checked on DuckDB's own parse tree before anything runs.

One SELECT statement; tables are published dataset names (unqualified), CTEs or the few table functions that
read no data; nothing else. DuckDB's configuration lockdown (see `engine`) refuses files, URLs, ATTACH, COPY and
INSTALL a second time; these checks give the clear message and also stop what the lockdown lets through
(DDL on the in-memory catalog, the Postgres scanner's table functions, the attached Postgres database).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from trace_core.naming import DATASET_NAME
from trace_core.query.errors import QueryRefusedError, QuerySqlError

# Table functions that compute rows without reading anything.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that reveal the engine's configuration.
REFUSED_FUNCTIONS = frozenset({"current_setting", "getvariable"})

_REFUSED_STATEMENTS = {
    duckdb.StatementType.COPY: "COPY is not allowed: results come back in the response",
    duckdb.StatementType.ATTACH: "ATTACH is not allowed: queries read published datasets only",
    duckdb.StatementType.DETACH: "DETACH is not allowed",
    duckdb.StatementType.SET: "SET is not allowed: the engine's configuration is fixed",
    duckdb.StatementType.VARIABLE_SET: "SET is not allowed: the engine's configuration is fixed",
    duckdb.StatementType.PRAGMA: "PRAGMA is not allowed: the engine's configuration is fixed",
    duckdb.StatementType.LOAD: "INSTALL and LOAD are not allowed: the engine's extensions are fixed",
    duckdb.StatementType.EXTENSION: "INSTALL and LOAD are not allowed: the engine's extensions are fixed",
}


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    sql: str
    """The single statement, as DuckDB split it out of the request."""
    dataset_names: frozenset[str]
    """The dataset names it reads (lower case)."""


def check_query(parser: duckdb.DuckDBPyConnection, sql: str) -> CheckedQuery:
    """The statement and the datasets it reads; `QueryRefusedError` or `QuerySqlError` with a message for its author.

    `parser` is any DuckDB connection: only its parser is used."""
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as error:
        raise QuerySqlError(str(error)) from None
    if len(statements) != 1:
        raise QueryRefusedError(f"send exactly one SQL statement, got {len(statements)}")
    [statement] = statements
    if statement.type != duckdb.StatementType.SELECT:
        reason = _REFUSED_STATEMENTS.get(statement.type)
        raise QueryRefusedError(
            reason or f"{statement.type.name} is not allowed: queries are read-only SELECT statements"
        )
    row = parser.execute("SELECT json_serialize_sql(?)", [statement.query]).fetchone()
    assert row is not None
    tree = json.loads(row[0])
    if tree.get("error"):
        raise QuerySqlError(str(tree.get("error_message", "the statement could not be parsed")))
    ctes: set[str] = set()
    tables: set[str] = set()
    for node in _nodes(tree["statements"]):
        ctes.update(entry["key"].lower() for entry in node.get("cte_map", {}).get("map", []))
        kind = node.get("type") if isinstance(node.get("type"), str) else None
        if kind == "BASE_TABLE":
            tables.add(_dataset_name(node))
        elif kind == "TABLE_FUNCTION":
            _check_table_function(node["function"])
        elif kind == "SHOW_REF":
            raise QueryRefusedError("SHOW, DESCRIBE and SUMMARIZE are not allowed: select from a dataset instead")
        elif kind in {"COLUMN_DATA", "DELIM_GET"}:
            raise QueryRefusedError(f"table reference {kind} is not allowed")
        elif node.get("class") == "FUNCTION" and node.get("function_name", "").lower() in REFUSED_FUNCTIONS:
            raise QueryRefusedError(f"function {node['function_name']}() is not allowed")
    return CheckedQuery(statement.query, frozenset(tables - ctes))


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every object of the serialized parse tree, depth first."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child)


def _dataset_name(node: dict[str, Any]) -> str:
    name: str = node["table_name"]
    if node.get("catalog_name") or node.get("schema_name"):
        qualified = ".".join(part for part in (node.get("catalog_name"), node.get("schema_name"), name) if part)
        raise QueryRefusedError(f"{qualified!r}: qualified names are not allowed; name a published dataset alone")
    if not DATASET_NAME.match(name.lower()):
        raise QueryRefusedError(f"{name!r} is not a dataset name: queries read published datasets, never files or URLs")
    return name.lower()


def _check_table_function(function: dict[str, Any]) -> None:
    name = str(function.get("function_name", ""))
    if function.get("schema") or function.get("catalog") or name.lower() not in ALLOWED_TABLE_FUNCTIONS:
        raise QueryRefusedError(
            f"table function {name}() is not allowed: queries read published datasets by name "
            f"(allowed table functions: {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})"
        )
