"""The lifecycle API's answers to bad input and to callers without the right role: a 4xx naming the problem."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.dispatcher.test_end_to_end import HELLO
from tests.dispatcher.test_public_api import token_with_roles
from tests.support.rows import Conn
from trace_core.auth.repository import bootstrap_org

Client = AsyncTestClient[Any]

OTHER = """
dag: other
jobs:
  numbers:
    activation: source
    operator: python
    config: {function: "examples.hello_udfs:five_numbers"}
  doubled:
    operator: python
    inputs: [{from: {job: numbers}}]
    config: {function: "examples.hello_udfs:double"}
    outputs: [{storage: s3}]
publish:
  - {job: doubled, dataset: doubled}
"""


async def test_deploy_and_rollback_refuse_bad_input(dispatcher: Client, db: Conn) -> None:
    admin, token = await bootstrap_org(db, "acme")
    headers = {"Authorization": f"Bearer {token.secret}"}
    reader = await token_with_roles(db, admin.org_id, "rita", ["reader"])

    missing = await dispatcher.post("/v1/dags/nope/rollback", headers=headers)
    assert missing.status_code == 404 and "no DAG 'nope'" in missing.json()["detail"]
    assert (await dispatcher.get("/v1/dags/nope/versions", headers=headers)).status_code == 404
    fresh = await dispatcher.post("/v1/dags", params={"rematerialize": "none"}, content=HELLO, headers=headers)
    assert fresh.status_code == 400 and "not deployed yet" in fresh.json()["detail"]
    assert (await dispatcher.post("/v1/dags", content=HELLO, headers=headers)).status_code == 201

    bogus = await dispatcher.post("/v1/dags", params={"rematerialize": "some"}, content=HELLO, headers=headers)
    assert bogus.status_code == 400 and bogus.json()["detail"].startswith("rematerialize: 'some'")
    none_yet = await dispatcher.post("/v1/dags/hello/rollback", headers=headers)
    assert none_yet.status_code == 409 and "no previous version" in none_yet.json()["detail"]
    for body, where in (
        (b'{"to_version": 0}', "to_version"),
        (b'{"to_version": "two"}', "to_version"),
        (b'{"version": 1}', "version"),
        (b"[not json", "body"),
    ):
        refused = await dispatcher.post("/v1/dags/hello/rollback", content=body, headers=headers)
        assert refused.status_code == 400 and refused.json()["detail"].startswith(where), refused.text
    unknown = await dispatcher.post("/v1/dags/hello/rollback", json={"to_version": 7}, headers=headers)
    assert unknown.status_code == 404 and "no version 7" in unknown.json()["detail"]
    active = await dispatcher.post("/v1/dags/hello/rollback", json={"to_version": 1}, headers=headers)
    assert active.status_code == 409 and "already active" in active.json()["detail"]

    # roles: reading needs reader, deploying and rolling back need writer
    assert (await dispatcher.get("/v1/dags/hello/versions", headers=reader)).status_code == 200
    for call in (
        dispatcher.post("/v1/dags/hello/rollback", headers=reader),
        dispatcher.post("/v1/dags", content=HELLO, headers=reader),
    ):
        denied = await call
        assert denied.status_code == 403 and "'writer' role" in denied.json()["detail"]

    # an execution-only edit, rolled back: the rolled-back version cannot be restored
    faster = HELLO.replace("max_concurrency: 2", "max_concurrency: 3")
    assert (await dispatcher.post("/v1/dags", content=faster, headers=headers)).json()["status"] == "active"
    back = await dispatcher.post("/v1/dags/hello/rollback", headers=headers)
    assert back.status_code == 200 and back.json()["active_version"] == 1 and back.json()["rolled_back_version"] == 2
    again = await dispatcher.post("/v1/dags/hello/rollback", json={"to_version": 2}, headers=headers)
    assert again.status_code == 409 and "was rolled back" in again.json()["detail"]
    versions = (await dispatcher.get("/v1/dags/hello/versions", headers=headers)).json()
    assert [(v["version"], v["status"], v["parent_version"]) for v in versions] == [
        (2, "rolled_back", 1),
        (1, "active", None),
    ]

    # an output keeps its storage across versions
    stored = HELLO.replace(
        '    config: {function: "examples.hello_udfs:double"}',
        '    config: {function: "examples.hello_udfs:double"}\n    outputs: [{storage: s3}]',
    )
    changed = await dispatcher.post("/v1/dags", content=stored, headers=headers)
    assert changed.status_code == 422 and changed.json()["extra"][0]["field"] == "jobs.doubled.outputs.0"
    assert "events only" in changed.json()["detail"]


async def test_redeploys_keep_single_producer_and_read_rules(dispatcher: Client, db: Conn) -> None:
    admin, token = await bootstrap_org(db, "acme")
    headers = {"Authorization": f"Bearer {token.secret}"}
    writer = await token_with_roles(db, admin.org_id, "wendy", ["writer"])
    assert (await dispatcher.post("/v1/dags", content=OTHER, headers=headers)).status_code == 201
    assert (await dispatcher.post("/v1/dags", content=HELLO, headers=writer)).status_code == 201

    # a redeploy may not publish a name another DAG produces
    taking = (
        HELLO.replace(
            "  sink:\n    operator: noop\n",
            "  copy:\n    operator: noop\n    inputs: [{from: {job: doubled}}]\n    outputs: [{storage: s3}]\n"
            "  sink:\n    operator: noop\n",
        )
        + "publish:\n  - {job: copy, dataset: doubled}\n"
    )
    taken = await dispatcher.post("/v1/dags", content=taking, headers=writer)
    assert taken.status_code == 409 and "single producer" in taken.json()["detail"]
    assert taken.json()["extra"] == [{"field": "publish.0.dataset"}]

    # reading another DAG's dataset needs its read rule, at every deploy
    reading = HELLO.replace("inputs: [{from: {job: doubled}}]", "inputs: [{from: {dataset: doubled}}]")
    unreadable = await dispatcher.post("/v1/dags", content=reading, headers=writer)
    assert unreadable.status_code == 422
    assert unreadable.json()["extra"][0]["field"] == "jobs.sink.inputs.0.from.dataset"
    await db.execute("INSERT INTO org_roles (org_id, name) VALUES (%(o)s, 'analyst')", {"o": admin.org_id})
    await db.execute(
        """INSERT INTO org_role_memberships (org_id, role_id, user_id)
           SELECT %(o)s, r.role_id, u.user_id FROM org_roles r, users u
           WHERE r.org_id = %(o)s AND r.name = 'analyst' AND u.name = 'wendy'""",
        {"o": admin.org_id},
    )
    granted = await dispatcher.put("/v1/datasets/doubled/read-roles", json={"roles": ["analyst"]}, headers=headers)
    assert granted.status_code == 200, granted.text
    readable = await dispatcher.post("/v1/dags", content=reading, headers=writer)
    assert readable.status_code == 201 and readable.json()["rebuild_jobs"] == ["sink"]

    # the producer may not stop publishing what another DAG reads
    unpublishing = OTHER.split("publish:")[0]
    kept = await dispatcher.post("/v1/dags", content=unpublishing, headers=headers)
    assert kept.status_code == 409 and kept.json()["extra"] == [{"field": "publish"}]
    assert "'doubled' is read by job 'sink' of DAG 'hello'" in kept.json()["detail"]

    # a DAG reads its own outputs through `job`, not through its published name
    own = OTHER.replace("publish:", "  again:\n    operator: noop\n    inputs: [{from: {dataset: doubled}}]\npublish:")
    refused = await dispatcher.post("/v1/dags", content=own, headers=headers)
    assert refused.status_code == 422 and refused.json()["extra"][0]["field"] == "jobs.again.inputs.0.from"
    assert "from: {job: doubled, output: 0}" in refused.json()["detail"]
