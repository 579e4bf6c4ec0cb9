"""The reaper's sweep releases the slot of a task that is no longer in flight, and only that one."""

from __future__ import annotations

from uuid import UUID

from dispatcher.repositories import tasks as repo
from tests.support.rows import Conn, make_graph, one


async def test_a_lease_outlives_no_finished_task(db: Conn) -> None:
    g = await make_graph(db)
    await db.execute(
        "UPDATE tasks SET status = 'Completed', finished_at = now() WHERE task_id = %(t)s", {"t": g.task_id}
    )
    tasks = {g.task_id: "Completed"}
    for number, status in enumerate(("Dispatched", "Running", "Queued")):
        event = await one(
            db,
            """INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, range_start, range_end, scope_key,
                                   producer_task_id)
               VALUES (%(o)s, %(ds)s, %(v)s, 'data', %(n)s, %(n)s, %(k)s, %(t)s) RETURNING event_id""",
            {
                "o": g.org_id,
                "ds": g.dataset_uuid,
                "v": g.dataset_version,
                "n": number,
                "k": f"r:{number}",
                "t": g.task_id,
            },
        )
        task_id: UUID = await one(
            db,
            """INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, input_event_id, runtime, max_attempts,
                                  status, attempt_count)
               VALUES (%(o)s, %(d)s, %(v)s, %(j)s, %(e)s, 'ecs_python', 3, %(s)s, %(a)s) RETURNING task_id""",
            {
                "o": g.org_id,
                "d": g.dag_id,
                "v": g.dag_version_id,
                "j": g.job_id,
                "e": event,
                "s": status,
                "a": 0 if status == "Queued" else 1,
            },
        )
        tasks[task_id] = status
    for index, task_id in enumerate(tasks):
        slot = await one(
            db,
            """INSERT INTO worker_pool_slots (org_id, dag_id, pool_name, slot_index)
               VALUES (%(o)s, %(d)s, 'rpc', %(i)s) RETURNING slot_id""",
            {"o": g.org_id, "d": g.dag_id, "i": index},
        )
        await db.execute(
            "INSERT INTO slot_leases (slot_id, task_id, expires_at) VALUES (%(s)s, %(t)s, now() + interval '1 minute')",
            {"s": slot, "t": task_id},
        )

    assert await repo.release_orphan_leases(db) == 2

    cursor = await db.execute("SELECT task_id FROM slot_leases")
    held = {tasks[row["task_id"]] for row in await cursor.fetchall()}
    assert held == {"Dispatched", "Running"}
