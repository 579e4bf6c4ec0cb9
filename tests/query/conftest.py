"""Fixtures of the Query Service suite: the app behind a test client, an org with published datasets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.query.registry import Org, make_org
from tests.support.rows import Conn
from trace_core.objectstore import object_store_root
from trace_core.settings import Settings


@pytest.fixture
async def query_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The Query Service app (lifespan run) on this test's database and local object store."""
    from query_service.app import create_app

    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
def objects(settings: Settings) -> Path:
    """The local object store root the app reads Parquet from."""
    return Path(object_store_root(settings))


@pytest.fixture
async def org(db: Conn) -> Org:
    """An org with an admin token and a DAG with an (empty) active pointer set; publish datasets on it."""
    return await make_org(db)
