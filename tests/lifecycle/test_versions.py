"""Versions without a rebuild, in-process: execution-only deploys apply publish and worker pools with the version,
rollback restores an older version or the previous one, and the history says what happened."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.support.rows import Conn
from trace_core.auth.repository import bootstrap_org

Client = AsyncTestClient[Any]

BASE = """
dag: pools
worker_pools:
  rpc:
{slots}
jobs:
  source:
    activation: source
    operator: noop
    worker_pool: rpc
    outputs: [{{storage: s3}}]
{publish}"""


def pools_dag(slots: int, publish: bool) -> str:
    lines = "\n".join(f'    - env: {{SLOT: "{n}"}}' for n in range(slots))
    return BASE.format(slots=lines, publish="publish:\n  - {job: source, dataset: raw}\n" if publish else "")


async def live_slots(db: Conn) -> list[str]:
    cursor = await db.execute(
        "SELECT env->>'SLOT' AS slot FROM worker_pool_slots WHERE retired_at IS NULL ORDER BY slot_index"
    )
    return [row["slot"] for row in await cursor.fetchall()]


async def test_publish_and_pools_follow_the_served_version(dispatcher: Client, db: Conn) -> None:
    _, token = await bootstrap_org(db, "acme")
    headers = {"Authorization": f"Bearer {token.secret}"}

    async def deploy(text: str) -> dict[str, Any]:
        response = await dispatcher.post("/v1/dags", content=text, headers=headers)
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def published() -> list[str]:
        return [d["dataset"] for d in (await dispatcher.get("/v1/datasets", headers=headers)).json()]

    assert (await deploy(pools_dag(1, publish=False)))["version"] == 1
    assert await live_slots(db) == ["0"] and await published() == []
    second = await deploy(pools_dag(3, publish=True))
    assert (second["status"], second["rebuild_jobs"]) == ("active", [])
    assert await live_slots(db) == ["0", "1", "2"] and await published() == ["raw"]
    third = await deploy(pools_dag(2, publish=True))
    assert third["version"] == 3 and await live_slots(db) == ["0", "1"]

    # to an older version: its pools and its (empty) publish list come back
    older = await dispatcher.post("/v1/dags/pools/rollback", json={"to_version": 1}, headers=headers)
    assert older.status_code == 200 and older.json()["active_version"] == 1
    assert await live_slots(db) == ["0"] and await published() == []
    # then "the previous version": the one that served before version 1 came back
    previous = await dispatcher.post("/v1/dags/pools/rollback", headers=headers)
    assert previous.status_code == 200 and previous.json()["active_version"] == 2
    assert await live_slots(db) == ["0", "1", "2"] and await published() == ["raw"]

    history = (await dispatcher.get("/v1/dags/pools/versions", headers=headers)).json()
    assert [(v["version"], v["status"], v["parent_version"]) for v in history] == [
        (3, "rolled_back", 2),
        (2, "active", 1),
        (1, "rolled_back", None),
    ]
    assert history[1]["changes"]["changed_jobs"] == [] and history[1]["changes"]["publish_changed"] is True
    assert history[1]["changes"]["worker_pools_changed"] == ["rpc"]
    status = (await dispatcher.get("/v1/dags/pools", headers=headers)).json()
    assert status["active_version"] == 2 and status["rebuild"] is None
    assert [d["dataset_name"] for d in status["datasets"]] == ["raw"]
