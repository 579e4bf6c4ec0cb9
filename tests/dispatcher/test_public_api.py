"""The public API's answers to bad input and to callers without the right role."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.dispatcher.test_end_to_end import HELLO
from tests.support.rows import Conn
from trace_core.auth.repository import Q, bootstrap_org, create_token


async def token_with_roles(db: Conn, org_id: Any, name: str, roles: list[str]) -> dict[str, str]:
    cursor = await db.execute(Q["insert_user"], {"org_id": org_id, "name": name, "email": None})
    user = await cursor.fetchone()
    assert user is not None
    for role in roles:
        params = {"org_id": org_id, "user_id": user["user_id"], "granted_by": None, "role": role}
        await db.execute(Q["grant_role"], params)
    token = await create_token(db, org_id, user["user_id"], "test")
    return {"Authorization": f"Bearer {token.secret}"}


async def test_deploy_errors_name_line_and_field(dispatcher: AsyncTestClient[Any], db: Conn) -> None:
    _, token = await bootstrap_org(db, "acme")
    headers = {"Authorization": f"Bearer {token.secret}"}
    bad = HELLO.replace("operator: noop", "operator: noop\n    execution_strategy: Bulk")
    response = await dispatcher.post("/v1/dags", content=bad, headers=headers)
    assert response.status_code == 422
    [problem] = response.json()["extra"]
    assert problem["field"] == "jobs.sink.execution_strategy" and "range_aggregator" in problem["message"]
    assert problem["line"] == next(i for i, line in enumerate(bad.splitlines(), 1) if "Bulk" in line)
    assert "Traceback" not in response.text

    not_yaml = await dispatcher.post("/v1/dags", content=b"dag: [", headers=headers)
    assert not_yaml.status_code == 422 and "not valid YAML" in not_yaml.json()["detail"]
    binary = await dispatcher.post("/v1/dags", content=b"\xff\xfe", headers=headers)
    assert binary.status_code == 400 and "UTF-8" in binary.json()["detail"]
    aggregating = (
        HELLO
        + "  ranges:\n    operator: range_aggregator\n    runtime: ecs_python\n"
        + ("    inputs: [{from: {job: numbers}}]\n    config: {range_size: 10}\n")
    )
    pinned = await dispatcher.post("/v1/dags", content=aggregating, headers=headers)
    assert pinned.status_code == 422
    assert [(p["field"], p["message"]) for p in pinned.json()["extra"]] == [
        ("jobs.ranges.runtime", "range_aggregator runs inside the dispatcher, not on a worker runtime: remove runtime")
    ]
    cross = HELLO.replace("inputs: [{from: {job: numbers}}]", "inputs: [{from: {dataset: nobody_publishes_this}}]")
    missing = await dispatcher.post("/v1/dags", content=cross, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["extra"][0]["field"] == "jobs.doubled.inputs.0.from.dataset"


async def test_roles_deploy_conflicts_and_runs(dispatcher: AsyncTestClient[Any], db: Conn) -> None:
    admin, token = await bootstrap_org(db, "acme")
    headers = {"Authorization": f"Bearer {token.secret}"}
    reader = await token_with_roles(db, admin.org_id, "rita", ["reader"])
    refused = await dispatcher.post("/v1/dags", content=HELLO, headers=reader)
    assert refused.status_code == 403 and "'writer' role" in refused.json()["detail"]
    assert (await dispatcher.get("/v1/dags", headers=reader)).status_code == 200

    assert (await dispatcher.post("/v1/dags", content=HELLO, headers=headers)).status_code == 201
    again = await dispatcher.post("/v1/dags", content=HELLO, headers=headers)  # the same YAML deploys nothing
    assert again.status_code == 200 and again.json()["status"] == "unchanged" and again.json()["version"] == 1

    publisher = HELLO.replace("dag: hello", "dag: other") + "publish:\n  - {job: doubled, dataset: doubled}\n"
    publisher = publisher.replace("  sink:", "  sink2:").replace(
        "    operator: python\n    inputs: [{from: {job: numbers}}]",
        "    operator: python\n    inputs: [{from: {job: numbers}}]\n    outputs: [{storage: s3}]",
    )
    assert (await dispatcher.post("/v1/dags", content=publisher, headers=headers)).status_code == 201
    twin = publisher.replace("dag: other", "dag: twin")
    taken = await dispatcher.post("/v1/dags", content=twin, headers=headers)
    assert taken.status_code == 409 and "single producer" in taken.json()["detail"]

    reactive = await dispatcher.post("/v1/dags/hello/jobs/doubled/runs", headers=headers)
    assert reactive.status_code == 409 and "reactive" in reactive.json()["detail"]
    unknown = await dispatcher.post("/v1/dags/hello/jobs/nope/runs", headers=headers)
    assert unknown.status_code == 404
    started = await dispatcher.post("/v1/dags/hello/jobs/numbers/runs", headers=headers)
    assert started.status_code == 202 and started.json()["run"] in {"already starting", "restarted"}
    assert (await dispatcher.get("/v1/dags/nope", headers=headers)).status_code == 404
    bad_cursor = await dispatcher.get("/v1/tasks", params={"cursor": "zzz"}, headers=headers)
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["detail"]
    bad_limit = await dispatcher.get("/v1/tasks", params={"limit": 0}, headers=headers)
    assert bad_limit.status_code == 400
