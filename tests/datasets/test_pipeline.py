"""A DAG whose python and sql jobs write Parquet and Postgres outputs, run by real dispatcher and worker
processes: the data lands in the versioned locations, and the dataset API describes it."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.support.dags import EXAMPLES
from tests.support.stack import Stack

PIPELINE = (EXAMPLES / "trades.yaml").read_text()


def test_python_and_sql_jobs_write_parquet_and_postgres_outputs(stack: Stack) -> None:
    stack.deploy(PIPELINE)
    stack.start_worker()
    stack.wait_jobs_done({"trades": 1, "big_trades": 3, "range_totals": 3})

    trades = stack.sql(f"SELECT id, amount, wei::text AS wei FROM {stack.location('trades')} ORDER BY id")
    assert len(trades) == 12 and trades[1] == {"id": 1, "amount": 20, "wei": str(10**21)}
    big = stack.sql(f"SELECT id, amount FROM {stack.location('big_trades')} ORDER BY id")
    assert [row["id"] for row in big] == [2, 3, 12, 13, 22, 23]
    assert big[0]["amount"] == 30

    objects = stack.home / "objects"
    totals_dir = objects / stack.location("range_totals")
    assert sorted(p.name for p in totals_dir.iterdir()) == ["0_9.parquet", "10_19.parquet", "20_29.parquet"]
    assert pq.read_table(totals_dir / "10_19.parquet").to_pylist() == [{"first_id": 10, "trades": 4, "volume": 100}]
    raw = pq.read_table(objects / stack.location("trades_parquet") / "20_29.parquet")
    assert raw.column("id").to_pylist() == [20, 21, 22, 23]

    with stack.client() as api:
        listed = api.get("/v1/datasets").json()
        assert [d["dataset"] for d in listed] == ["big_trades", "range_totals", "trades", "trades_parquet"]
        detail = api.get("/v1/datasets/trades").json()
        assert detail["producer"] == {"dag": "trades", "job": "trades", "output": 0}
        assert detail["storage"]["kind"] == "postgres" and detail["storage"]["write_mode"] == "direct"
        assert [c["name"] for c in detail["schema"]["columns"]] == ["id", "amount", "wei"]
        assert [v["current"] for v in detail["versions"]] == [True]
        assert detail["current_version"] == detail["versions"][0]["dataset_version"]

        # a restarted source run writes its scopes again: replace keeps one copy of each row
        assert api.post("/v1/dags/trades/jobs/trades/runs").json()["run"] == "restarted"
    stack.wait_jobs_done({"trades": 1})
    assert len(stack.sql(f"SELECT id FROM {stack.location('trades')}")) == 12


def test_operator_data_errors_fail_the_task_with_the_reason(stack: Stack, tmp_path: Path) -> None:
    broken = PIPELINE.replace("select id, amount from input", "select no_such_column from input")
    stack.deploy(broken)
    stack.start_worker()
    stack.wait_jobs_done({"trades": 1, "big_trades": 3, "range_totals": 3})
    errors = stack.sql(
        """SELECT DISTINCT t.status, t.last_error FROM tasks t JOIN jobs j USING (job_id)
           WHERE j.job_name = 'big_trades'"""
    )
    assert len(errors) == 1 and errors[0]["status"] == "Failed"
    assert "config.query" in errors[0]["last_error"] and "no_such_column" in errors[0]["last_error"]
