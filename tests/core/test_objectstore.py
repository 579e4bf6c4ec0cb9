"""The object store behaves the same on a local directory and on S3 (moto's server on loopback)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.aws import AWS_ENV, moto_server
from trace_core.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore, open_object_store
from trace_core.settings import Settings

KEY = "org/o/dataset/d/version/v/0_9.parquet"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 on loopback with a `trace` bucket, and fake AWS credentials in the environment."""
    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    with moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="trace")
        yield endpoint
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """Each object store implementation, empty."""
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    s3 = S3ObjectStore(f"s3://trace/{tmp_path.name}", region="us-east-1", endpoint_url=endpoint)
    try:
        yield s3
    finally:
        await s3.close()


async def test_put_get_list_replace_and_delete(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "a.parquet"
    source.write_bytes(b"first")
    await store.put_file(KEY, source)
    await store.put_file("org/o/dataset/d/version/v/10_19.parquet", source)
    assert await store.list_keys("org/o/dataset/d/version/v") == [
        "org/o/dataset/d/version/v/0_9.parquet",
        "org/o/dataset/d/version/v/10_19.parquet",
    ]
    assert await store.list_keys("org/o/dataset/d/version/other") == []

    source.write_bytes(b"second")
    await store.put_file(KEY, source)  # a re-run replaces the scope's object
    target = tmp_path / "back.parquet"
    assert await store.get_file(KEY, target) and target.read_bytes() == b"second"
    assert not await store.get_file("org/o/missing.parquet", tmp_path / "missing")
    source.write_bytes(b"third")
    await store.put_file(KEY, source)
    assert target.read_bytes() == b"second"  # what was got stays as it was (a local get may be a hard link)
    target.unlink()
    assert await store.get_file(KEY, target) and target.read_bytes() == b"third"

    await store.delete(KEY)
    await store.delete(KEY)  # deleting twice is fine
    assert await store.list_keys("org/o/dataset/d/version/v") == ["org/o/dataset/d/version/v/10_19.parquet"]
    assert store.url(KEY).endswith(KEY) and store.url(KEY).startswith(("/", "s3://trace/"))


async def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    for bad in ("../etc/passwd", "org/../../x", "", "org//x"):
        with pytest.raises(ValueError, match="invalid object key"):
            store.url(bad)


def test_settings_choose_the_store(tmp_path: Path) -> None:
    assert isinstance(open_object_store(Settings(home=tmp_path)), LocalObjectStore)
    assert open_object_store(Settings(home=tmp_path)).root == str((tmp_path / "objects").resolve())
    assert isinstance(open_object_store(Settings(object_store="s3://bucket/prefix")), S3ObjectStore)
    with pytest.raises(ValueError, match="local directory or s3://"):
        open_object_store(Settings(object_store="gs://bucket"))
