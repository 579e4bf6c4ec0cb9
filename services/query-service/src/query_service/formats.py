"""A query result as JSON, an Arrow IPC stream or CSV.

JSON values are JSON-safe: integers (HUGEINT too) within ±(2^53 - 1) are numbers and larger ones strings (so JavaScript
clients lose no digits), decimals are strings, non-finite floats are the strings `NaN`, `inf`, `-inf`, bytes
are `0x…` hex, dates and times ISO 8601, intervals seconds. Each column's DuckDB type says what its values are.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pyarrow as pa

from trace_core.query import QueryResult

ARROW_STREAM = "application/vnd.apache.arrow.stream"
CSV = "text/csv; charset=utf-8"
MAX_SAFE_INTEGER = 2**53 - 1


def json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value.as_tuple().exponent == 0:
        value = int(value)  # HUGEINT (e.g. the sum of BIGINTs) reaches Arrow as a decimal with scale 0
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return str(value)


def json_rows(table: pa.Table) -> list[list[Any]]:
    columns = [[json_value(value) for value in column.to_pylist()] for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def json_columns(result: QueryResult) -> list[dict[str, str]]:
    return [
        {"name": name, "type": kind} for name, kind in zip(result.table.column_names, result.column_types, strict=True)
    ]


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def csv_text(table: pa.Table) -> bytes:
    """A header line, then one line per row; NULL is an empty field, lists and structs are JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in json_rows(table):
        writer.writerow(_csv_field(value) for value in row)
    return out.getvalue().encode()


def _csv_field(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | list | dict):
        return json.dumps(value)
    return value
