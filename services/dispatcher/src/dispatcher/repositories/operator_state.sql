-- Durable operator state, one row per (org, job); writers compare-and-swap on `revision`.

-- name: read_state --
SELECT state, revision FROM operator_state WHERE org_id = %(org_id)s AND job_id = %(job_id)s;

-- name: lock_state --
-- The dispatcher's operator loop reads the state it is about to replace: no other writer may slip in between.
SELECT state, revision FROM operator_state WHERE org_id = %(org_id)s AND job_id = %(job_id)s FOR UPDATE;

-- name: insert_state --
-- The first save (expected revision 0): nothing is returned when another writer inserted first.
INSERT INTO operator_state (org_id, job_id, state, revision, updated_by_task_id)
VALUES (%(org_id)s, %(job_id)s, %(state)s, 1, %(task_id)s)
ON CONFLICT (org_id, job_id) DO NOTHING
RETURNING revision;

-- name: update_state --
-- Compare-and-swap: nothing is returned when the stored revision is not the expected one.
UPDATE operator_state
SET state = %(state)s, revision = revision + 1, updated_by_task_id = %(task_id)s, updated_at = now()
WHERE org_id = %(org_id)s AND job_id = %(job_id)s AND revision = %(expected_revision)s
RETURNING revision;
