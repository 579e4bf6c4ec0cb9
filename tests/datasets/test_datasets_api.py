"""`/v1/datasets`: who sees which dataset, what it says about one, and setting its read roles."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.dispatcher.test_public_api import token_with_roles
from tests.support.rows import Conn
from trace_core.auth.repository import bootstrap_org

PUBLISHER = """
dag: prices
jobs:
  ticks:
    activation: source
    operator: noop
    outputs: [{storage: s3}, {storage: postgres, write_mode: direct}]
publish:
  - {job: ticks, output: 0, dataset: ticks}
  - {job: ticks, output: 1, dataset: tick_table}
"""


async def test_readers_see_only_what_they_may_read(dispatcher: AsyncTestClient[Any], db: Conn) -> None:
    admin, token = await bootstrap_org(db, "acme")
    admin_headers = {"Authorization": f"Bearer {token.secret}"}
    deployed = await dispatcher.post("/v1/dags", content=PUBLISHER, headers=admin_headers)
    assert deployed.status_code == 201, deployed.text
    await db.execute(b"INSERT INTO org_roles (org_id, name) VALUES (%(org)s, 'analysts')", {"org": admin.org_id})
    analyst = await token_with_roles(db, admin.org_id, "ana", ["reader", "analysts"])
    outsider = await token_with_roles(db, admin.org_id, "otto", ["reader"])

    listed = (await dispatcher.get("/v1/datasets", headers=admin_headers)).json()
    assert [d["dataset"] for d in listed] == ["tick_table", "ticks"]
    assert (await dispatcher.get("/v1/datasets", headers=analyst)).json() == []

    detail = (await dispatcher.get("/v1/datasets/ticks", headers=admin_headers)).json()
    [version] = [d for d in deployed.json()["datasets"] if d["dataset_name"] == "ticks"]
    assert detail["dataset_uuid"] == version["dataset_uuid"]
    assert detail["current_version"] == version["dataset_version"]
    assert detail["producer"] == {"dag": "prices", "job": "ticks", "output": 0}
    assert detail["storage"]["kind"] == "s3" and detail["storage"]["format"] == "parquet"
    assert detail["storage"]["location"].endswith(f"/version/{version['dataset_version']}")
    assert detail["versions"][0]["dag_versions"] == [1] and detail["read_roles"] == []

    hidden = await dispatcher.get("/v1/datasets/ticks", headers=analyst)
    missing = await dispatcher.get("/v1/datasets/no_such_thing", headers=analyst)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("ticks", "X") == missing.json()["detail"].replace("no_such_thing", "X")

    granted = await dispatcher.put("/v1/datasets/ticks/read-roles", json={"roles": ["analysts"]}, headers=admin_headers)
    assert granted.status_code == 200 and granted.json()["read_roles"] == ["analysts"]
    assert (await dispatcher.get("/v1/datasets/ticks", headers=analyst)).status_code == 200
    assert [d["dataset"] for d in (await dispatcher.get("/v1/datasets", headers=analyst)).json()] == ["ticks"]
    assert (await dispatcher.get("/v1/datasets/ticks", headers=outsider)).status_code == 404

    cleared = await dispatcher.put("/v1/datasets/ticks/read-roles", json={"roles": []}, headers=admin_headers)
    assert cleared.json()["read_roles"] == []
    assert (await dispatcher.get("/v1/datasets/ticks", headers=analyst)).status_code == 404


async def test_read_roles_bad_input(dispatcher: AsyncTestClient[Any], db: Conn) -> None:
    admin, token = await bootstrap_org(db, "acme")
    admin_headers = {"Authorization": f"Bearer {token.secret}"}
    assert (await dispatcher.post("/v1/dags", content=PUBLISHER, headers=admin_headers)).status_code == 201
    writer = await token_with_roles(db, admin.org_id, "wendy", ["writer"])

    not_admin = await dispatcher.put("/v1/datasets/ticks/read-roles", json={"roles": []}, headers=writer)
    assert not_admin.status_code == 403
    unknown = await dispatcher.put("/v1/datasets/ticks/read-roles", json={"roles": ["ghosts"]}, headers=admin_headers)
    assert unknown.status_code == 422 and "no role 'ghosts'" in unknown.json()["detail"]
    bad_name = await dispatcher.put(
        "/v1/datasets/ticks/read-roles", json={"roles": ["Bad Role"]}, headers=admin_headers
    )
    assert bad_name.status_code == 422 and "roles.0" in bad_name.json()["detail"]
    not_a_list = await dispatcher.put("/v1/datasets/ticks/read-roles", json={"roles": "x"}, headers=admin_headers)
    assert not_a_list.status_code == 400 and "roles" in not_a_list.text
    nowhere = await dispatcher.put("/v1/datasets/nope/read-roles", json={"roles": []}, headers=admin_headers)
    assert nowhere.status_code == 404
    assert "Traceback" not in unknown.text + bad_name.text + not_a_list.text
