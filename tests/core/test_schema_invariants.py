"""Invariants the database itself protects, whatever code writes to it."""

from __future__ import annotations

import hashlib

import pytest
from psycopg import errors

from tests.support.rows import Conn, Graph, make_graph, make_org, one
from trace_core.idempotency import scope_key


async def test_system_role_names_are_reserved(db: Conn) -> None:
    org_id, _ = await make_org(db)
    with pytest.raises(errors.CheckViolation):
        await db.execute("INSERT INTO org_roles (org_id, name) VALUES (%(o)s, 'admin')", {"o": org_id})
    with pytest.raises(errors.CheckViolation):
        await db.execute("INSERT INTO org_roles (org_id, name, is_system) VALUES (%(o)s, 'ops', true)", {"o": org_id})
    await db.execute("INSERT INTO org_roles (org_id, name) VALUES (%(o)s, 'analysts')", {"o": org_id})


async def test_a_role_cannot_be_granted_across_orgs(db: Conn) -> None:
    org_a, _ = await make_org(db, "a")
    org_b, user_b = await make_org(db, "b")
    role_a = await one(db, "SELECT role_id FROM org_roles WHERE org_id = %(o)s AND name = 'admin'", {"o": org_a})
    with pytest.raises(errors.ForeignKeyViolation):
        await db.execute(
            "INSERT INTO org_role_memberships (org_id, role_id, user_id) VALUES (%(o)s, %(r)s, %(u)s)",
            {"o": org_b, "r": role_a, "u": user_b},
        )


async def test_events_dedupe_on_producer_dataset_and_scope(db: Conn) -> None:
    g = await make_graph(db)
    insert = """INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, range_start, range_end, scope_key,
                                    producer_task_id)
                VALUES (%(o)s, %(ds)s, %(v)s, 'data', 0, 99, %(k)s, %(t)s)
                ON CONFLICT ON CONSTRAINT events_dedup DO NOTHING RETURNING event_id"""
    params = {
        "o": g.org_id,
        "ds": g.dataset_uuid,
        "v": g.dataset_version,
        "k": scope_key(None, None, 0, 99),
        "t": g.task_id,
    }
    first = await (await db.execute(insert, params)).fetchall()
    again = await (await db.execute(insert, params)).fetchall()
    assert (len(first), len(again)) == (1, 0)


async def test_an_event_needs_a_scope_and_an_ordered_range(db: Conn) -> None:
    g = await make_graph(db)
    base = {"o": g.org_id, "ds": g.dataset_uuid, "v": g.dataset_version, "t": g.task_id}
    with pytest.raises(errors.CheckViolation):
        await db.execute(
            """INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, scope_key, producer_task_id)
               VALUES (%(o)s, %(ds)s, %(v)s, 'data', 'x', %(t)s)""",
            base,
        )
    with pytest.raises(errors.CheckViolation):
        await db.execute(
            """INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, range_start, range_end, scope_key,
                                   producer_task_id)
               VALUES (%(o)s, %(ds)s, %(v)s, 'data', 9, 1, 'x', %(t)s)""",
            base,
        )


async def test_one_live_run_per_source_job(db: Conn) -> None:
    g = await make_graph(db)
    second_run = """INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, runtime, max_attempts)
                    VALUES (%(o)s, %(d)s, %(v)s, %(j)s, 'ecs_python', 3)"""
    params = {"o": g.org_id, "d": g.dag_id, "v": g.dag_version_id, "j": g.job_id}
    with pytest.raises(errors.UniqueViolation):
        await db.execute(second_run, params)
    await db.execute("UPDATE tasks SET status = 'Failed', finished_at = now() WHERE task_id = %(t)s", {"t": g.task_id})
    await db.execute(second_run, params)  # a restart after the run ended is fine


async def test_one_active_version_per_dag(db: Conn) -> None:
    g = await make_graph(db)
    with pytest.raises(errors.UniqueViolation):
        await db.execute(
            """INSERT INTO dag_versions (org_id, dag_id, version, status, source_yaml, config, config_hash)
               VALUES (%(o)s, %(d)s, 2, 'active', '', '{}', %(h)s)""",
            {"o": g.org_id, "d": g.dag_id, "h": hashlib.sha256(b"y").digest()},
        )


async def test_a_published_name_has_one_producer_per_org(db: Conn) -> None:
    g = await make_graph(db)
    publish = "UPDATE datasets SET dataset_name = 'eth_blocks', published_at = now() WHERE dataset_uuid = %(d)s"
    await db.execute(publish, {"d": g.dataset_uuid})
    other = await one(
        db,
        """INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage, write_mode)
           VALUES (%(o)s, %(d)s, 'other', 0, 'postgres', 'direct') RETURNING dataset_uuid""",
        {"o": g.org_id, "d": g.dag_id},
    )
    with pytest.raises(errors.UniqueViolation):
        await db.execute(publish, {"d": other})


async def test_events_only_outputs_cannot_be_published(db: Conn) -> None:
    g = await make_graph(db)
    with pytest.raises(errors.CheckViolation):
        await db.execute(
            """INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage, dataset_name, published_at)
               VALUES (%(o)s, %(d)s, 'ranges', 0, 'none', 'ranges', now())""",
            {"o": g.org_id, "d": g.dag_id},
        )


async def test_append_jobs_need_a_unique_key(db: Conn) -> None:
    g = await make_graph(db)
    with pytest.raises(errors.CheckViolation):
        await db.execute(
            """INSERT INTO jobs (org_id, dag_id, job_name, activation, runtime, operator, execution_strategy,
                                 update_strategy, materialization_hash, created_in_version_id)
               VALUES (%(o)s, %(d)s, 'w', 'reactive', 'ecs_python', 'sql', 'PerUpdate', 'append', %(h)s, %(v)s)""",
            {"o": g.org_id, "d": g.dag_id, "h": hashlib.sha256(b"z").digest(), "v": g.dag_version_id},
        )


async def test_a_pointer_must_name_a_version_of_its_own_dataset(db: Conn) -> None:
    g = await make_graph(db)
    other = await one(
        db,
        """INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage, write_mode)
           VALUES (%(o)s, %(d)s, 'other', 0, 'postgres', 'direct') RETURNING dataset_uuid""",
        {"o": g.org_id, "d": g.dag_id},
    )
    pointer_set = await one(
        db,
        """INSERT INTO pointer_sets (org_id, dag_id, dag_version_id)
           VALUES (%(o)s, %(d)s, %(v)s) RETURNING pointer_set_id""",
        {"o": g.org_id, "d": g.dag_id, "v": g.dag_version_id},
    )
    with pytest.raises(errors.ForeignKeyViolation):
        await db.execute(
            "INSERT INTO pointer_set_entries VALUES (%(p)s, %(ds)s, %(v)s)",
            {"p": pointer_set, "ds": other, "v": g.dataset_version},
        )


async def test_one_running_attempt_and_one_slot_lease_per_task(db: Conn) -> None:
    g = await make_graph(db)
    attempt = """INSERT INTO task_attempts (task_id, attempt_number, attempt_token_hash, lease_expires_at)
                 VALUES (%(t)s, %(n)s, %(h)s, now() + interval '1 minute')"""
    await db.execute(attempt, {"t": g.task_id, "n": 1, "h": hashlib.sha256(b"1").digest()})
    with pytest.raises(errors.UniqueViolation):
        await db.execute(attempt, {"t": g.task_id, "n": 2, "h": hashlib.sha256(b"2").digest()})
    slots = [
        await one(
            db,
            """INSERT INTO worker_pool_slots (org_id, dag_id, pool_name, slot_index)
               VALUES (%(o)s, %(d)s, 'rpc', %(i)s) RETURNING slot_id""",
            {"o": g.org_id, "d": g.dag_id, "i": i},
        )
        for i in range(2)
    ]
    lease = "INSERT INTO slot_leases (slot_id, task_id, expires_at) VALUES (%(s)s, %(t)s, now() + interval '1 minute')"
    await db.execute(lease, {"s": slots[0], "t": g.task_id})
    with pytest.raises(errors.UniqueViolation):
        await db.execute(lease, {"s": slots[1], "t": g.task_id})


async def _give_the_task_its_own_rows(db: Conn, g: Graph) -> None:
    """An attempt, an emitted event (queued for the router) and a transport-queue entry of `g`'s task (0009: these
    carry no foreign key to the task; a trigger deletes them with it)."""
    attempt = await one(
        db,
        """INSERT INTO task_attempts (task_id, attempt_number, attempt_token_hash, lease_expires_at)
           VALUES (%(t)s, 1, %(h)s, now() + interval '1 minute') RETURNING attempt_id""",
        {"t": g.task_id, "h": hashlib.sha256(b"1").digest()},
    )
    event = await one(
        db,
        """INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, range_start, range_end, scope_key,
                               producer_task_id, producer_attempt_id)
           VALUES (%(o)s, %(ds)s, %(v)s, 'data', 0, 9, 'r:0-9', %(t)s, %(a)s) RETURNING event_id""",
        {"o": g.org_id, "ds": g.dataset_uuid, "v": g.dataset_version, "t": g.task_id, "a": attempt},
    )
    await db.execute("INSERT INTO unrouted_events (event_id) VALUES (%(e)s)", {"e": event})
    await db.execute("INSERT INTO transport_queue (task_id, runtime) VALUES (%(t)s, 'ecs_python')", {"t": g.task_id})


async def test_deleting_an_org_removes_everything_it_owns(db: Conn) -> None:
    g = await make_graph(db)
    await _give_the_task_its_own_rows(db, g)
    await db.execute("DELETE FROM orgs WHERE org_id = %(o)s", {"o": g.org_id})
    for table in (
        "users",
        "dags",
        "dag_versions",
        "jobs",
        "datasets",
        "dataset_versions",
        "tasks",
        "task_attempts",
        "events",
        "unrouted_events",
        "transport_queue",
    ):
        count = await one(db, f"SELECT count(*) FROM {table}", {})
        assert count == 0, table


async def test_deleting_a_task_removes_the_rows_it_owns(db: Conn) -> None:
    g = await make_graph(db)
    await _give_the_task_its_own_rows(db, g)
    await db.execute("DELETE FROM tasks WHERE task_id = %(t)s", {"t": g.task_id})
    for table, column in (
        ("task_attempts", "task_id"),
        ("events", "producer_task_id"),
        ("transport_queue", "task_id"),
    ):
        count = await one(db, f"SELECT count(*) FROM {table} WHERE {column} = %(t)s", {"t": g.task_id})
        assert count == 0, table
    assert await one(db, "SELECT count(*) FROM unrouted_events", {}) == 0
