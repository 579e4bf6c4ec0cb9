"""`/internal/rows` as a worker meets it: direct writes into a dataset version's table, and the bad calls."""

from __future__ import annotations

from typing import Any

import httpx

from tests.dispatcher.test_worker_contract import call, fetch, take_dispatched
from tests.support.stack import Stack
from trace_core.contracts.events import EventScope

DIRECT = """
dag: writer
jobs:
  source:
    activation: source
    operator: noop
    update_strategy: {strategy}
    outputs:
      - {{storage: postgres, write_mode: direct{key}}}
      - {{storage: s3{key}}}
publish:
  - {{job: source, output: 0, dataset: things}}
"""


def key(cursor: str) -> str:
    return EventScope(cursor=cursor).key


def deploy(stack: Stack, strategy: str = "append", key: str = ", unique_key: [id]") -> dict[str, Any]:
    return stack.deploy(DIRECT.format(strategy=strategy, key=key))


def rows(internal: httpx.Client, payload: dict[str, Any], scope: str, items: list[dict[str, Any]], **extra: Any) -> Any:
    return internal.post("/internal/rows", json=call(payload, scope={"cursor": scope}, rows=items, **extra))


def table_of(stack: Stack) -> str:
    [row] = stack.sql(
        "SELECT storage_location FROM current_dataset_versions WHERE dataset_name = 'things'"  # trace_data.ds_…
    )
    return str(row["storage_location"])


def test_append_creates_the_version_table_and_dedupes_on_the_unique_key(stack: Stack) -> None:
    deployed = deploy(stack)
    with stack.internal() as internal:
        payload = fetch(internal, take_dispatched(stack, internal))
        first = rows(internal, payload, "1", [{"id": 1, "name": "a", "wei": 10**24}, {"id": 2, "name": "b"}])
        assert first.status_code == 200, first.text
        assert first.json() == {"written": 2, "duplicates": 0, "replaced": 0}
        again = rows(internal, payload, "2", [{"id": 2, "name": "b2"}, {"id": 3, "name": "c", "wei": 5}])
        assert again.json() == {"written": 1, "duplicates": 1, "replaced": 0}

    table = table_of(stack)
    [version] = [d for d in deployed["datasets"] if d["output"] == 0]
    assert version["dataset_version"].replace("-", "") not in table  # named from uuid and version in base32
    assert table.startswith("trace_data.ds_")
    stored = stack.sql(f"SELECT id, name, wei::text AS wei, _trace_scope FROM {table} ORDER BY id")
    assert stored == [
        {"id": 1, "name": "a", "wei": str(10**24), "_trace_scope": key("1")},
        {"id": 2, "name": "b", "wei": None, "_trace_scope": key("1")},  # append never overwrites
        {"id": 3, "name": "c", "wei": "5", "_trace_scope": key("2")},
    ]
    [registry] = stack.sql("SELECT schema FROM datasets WHERE dataset_name = 'things'")
    assert registry["schema"] == {
        "columns": [
            {"name": "id", "type": "bigint"},
            {"name": "name", "type": "text"},
            {"name": "wei", "type": "numeric"},
        ]
    }


def test_replace_rewrites_only_its_scope(stack: Stack) -> None:
    deploy(stack, strategy="replace")
    with stack.internal() as internal:
        payload = fetch(internal, take_dispatched(stack, internal))
        assert rows(internal, payload, "a", [{"id": 1, "v": 1.5}, {"id": 2, "v": 2}]).status_code == 200
        assert rows(internal, payload, "b", [{"id": 10, "v": 10}]).status_code == 200
        rerun = rows(internal, payload, "a", [{"id": 3, "v": 3}, {"id": 3, "v": 4}], replace_scope=True)
        assert rerun.json() == {"written": 1, "duplicates": 1, "replaced": 2}
    stored = stack.sql(f"SELECT id, v, _trace_scope FROM {table_of(stack)} ORDER BY id")
    assert stored == [{"id": 3, "v": 4.0, "_trace_scope": key("a")}, {"id": 10, "v": 10.0, "_trace_scope": key("b")}]


def test_bad_rows_are_refused_with_the_field_and_write_nothing(stack: Stack) -> None:
    deploy(stack)
    with stack.internal() as internal:
        payload = fetch(internal, take_dispatched(stack, internal))
        assert rows(internal, payload, "1", [{"id": 1, "n": 1}]).status_code == 200
        cases: list[tuple[list[dict[str, Any]], str]] = [
            ([{"id": 2, "color": "red"}], "column 'color' is not in the dataset's table (its columns: id, n)"),
            ([{"id": 2, "n": 2}, {"id": 3, "n": "three"}], "invalid input syntax for type bigint"),
            ([{"id": 2, "_trace_scope": "x"}], "rows.0._trace_scope: columns starting with '_trace_' are Trace's"),
            ([{"id": 2, "Bad Name": 1}], "rows.0: column name 'Bad Name' must match"),
            ([{"n": 5}], "rows.0.id: the unique_key column 'id' is missing or null"),
        ]
        for items, message in cases:
            refused = rows(internal, payload, "2", items)
            assert refused.status_code == 400, refused.text
            assert message in refused.json()["detail"], refused.json()
        s3_output = internal.post("/internal/rows", json=call(payload, output=1, scope={"cursor": "1"}, rows=[{}]))
        assert s3_output.status_code == 400 and "stored as Parquet" in s3_output.json()["detail"]
        missing_output = internal.post("/internal/rows", json=call(payload, output=7, scope={"cursor": "1"}, rows=[{}]))
        assert missing_output.status_code == 400 and "output: 7 is out of range" in missing_output.json()["detail"]
        no_scope = internal.post("/internal/rows", json=call(payload, rows=[{"id": 9}]))
        assert no_scope.status_code == 400 and "scope" in no_scope.text
        wrong_token = rows(internal, {**payload, "attempt_token": "x" * 32}, "1", [{"id": 9}])
        assert wrong_token.status_code == 403
        stale = fetch(internal, payload["task_id"])  # a new attempt supersedes the first
        refused = rows(internal, payload, "1", [{"id": 9}])
        assert refused.status_code == 409 and f"#{stale['attempt_number']}" in refused.json()["detail"]
    assert stack.sql(f"SELECT id, n FROM {table_of(stack)}") == [{"id": 1, "n": 1}]


def test_mixed_types_in_a_first_write_are_refused(stack: Stack) -> None:
    deploy(stack, strategy="replace", key="")
    with stack.internal() as internal:
        payload = fetch(internal, take_dispatched(stack, internal))
        refused = rows(internal, payload, "1", [{"x": 1}, {"x": "one"}])
        assert refused.status_code == 400 and "column 'x' mixes bigint, text values" in refused.json()["detail"]
    assert stack.sql("SELECT to_regclass(%(t)s) AS t", {"t": table_of(stack)}) == [{"t": None}]


def test_buffered_outputs_are_refused_at_deploy(stack: Stack) -> None:
    buffered = DIRECT.format(strategy="append", key=", unique_key: [id]").replace("direct", "buffered")
    with stack.client() as api:
        answer = api.post("/v1/dags", content=buffered)
    assert answer.status_code == 422
    assert answer.json()["extra"][0]["field"] == "jobs.source.outputs.0.write_mode"
    assert "not supported yet" in answer.json()["detail"]
