"""Parquet datasets in S3 (moto's server on loopback), read through httpfs with the lockdown on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from litestar.testing import AsyncTestClient

from tests.query.registry import Org
from tests.support.aws import AWS_ENV, moto_server
from trace_core.objectstore import S3ObjectStore
from trace_core.query import CheckedQuery, QueryEngine, QueryRefusedError
from trace_core.settings import Settings

BUCKET = "trace-objects"


@pytest.fixture
def s3_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """This test's settings with the object store in a bucket of a moto server."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield settings.model_copy(update={"object_store": f"s3://{BUCKET}/data", "aws_endpoint_url": endpoint})


async def put_parquet(settings: Settings, tmp_path: Path, key: str, columns: dict[str, list[Any]]) -> None:
    local = tmp_path / "upload.parquet"
    pq.write_table(pa.table(columns), local)
    store = S3ObjectStore(settings.object_store, region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)
    try:
        await store.put_file(key, local)
    finally:
        await store.close()


async def test_parquet_in_s3(s3_settings: Settings, org: Org, tmp_path: Path) -> None:
    from query_service.app import create_app

    await org.publish("blocks", "s3")
    await org.publish("empty", "s3")
    await put_parquet(s3_settings, tmp_path, org.parquet_key("blocks", 0, 2), {"number": [0, 1, 2]})
    await put_parquet(s3_settings, tmp_path, org.parquet_key("blocks", 3, 3), {"number": [3]})
    async with AsyncTestClient(app=create_app(s3_settings)) as client:
        sql = "select count(*) as n, sum(number) as total from blocks"
        response = await client.post("/v1/query", json={"sql": sql}, headers=org.admin)
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [[4, 6]]
        empty = await client.post("/v1/query", json={"sql": "select * from empty"}, headers=org.admin)
        assert empty.status_code == 400 and empty.json()["detail"] == "dataset 'empty' has no data yet"


def test_duckdb_reads_no_other_bucket(s3_settings: Settings) -> None:
    store = S3ObjectStore(s3_settings.object_store, region="us-east-1", endpoint_url=s3_settings.aws_endpoint_url)
    engine = QueryEngine(
        store, database_url=None, aws_region="us-east-1", aws_endpoint_url=s3_settings.aws_endpoint_url
    )
    try:
        with pytest.raises(QueryRefusedError, match="disabled"):
            engine.execute(
                CheckedQuery("select * from read_parquet('s3://other-bucket/x.parquet')", frozenset()), [], 1
            )
    finally:
        engine.close()
