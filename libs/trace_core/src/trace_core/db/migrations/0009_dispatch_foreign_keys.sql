-- 0009: fewer checks on the dispatch hot path (docs/dispatcher.md, "Benchmark").
--
-- A foreign-key check is a trigger and a lookup per inserted row: 10,000 inserts took ~54 ms with one and ~14 ms
-- without on a quiet machine here (~250 and ~20 ms loaded), and a task took fourteen. The rows a task owns (its
-- attempts, the events it emitted, its lineage rows, its transport-queue entry) are written only by statements
-- that create the task or hold its row locked (the router's insert, the scheduler's dispatch, task-fetch and task-complete after their gate), so
-- their references to the task and to its attempts hold by construction, and the lock keeps a concurrent
-- delete of the task in order. So does a lineage row's copy of its task's input event (id, dataset, version),
-- written by the statement that makes the task from that event, locked. Their foreign keys go; deleting a task
-- still deletes them, by the trigger below. The references across owners stay checked: tasks to jobs, versions
-- and their input events, events to the dataset versions they belong to.
ALTER TABLE task_attempts DROP CONSTRAINT task_attempts_task_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_producer_task_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_producer_attempt_fk;
ALTER TABLE task_inputs DROP CONSTRAINT task_inputs_task_id_fkey;
ALTER TABLE task_inputs DROP CONSTRAINT task_inputs_event_id_fkey;
ALTER TABLE task_inputs DROP CONSTRAINT task_inputs_dataset_uuid_dataset_version_fkey;
ALTER TABLE transport_queue DROP CONSTRAINT transport_queue_task_id_fkey;

-- What the dropped ON DELETE CASCADE did: a deleted task (with its job or org) takes its own rows along.
CREATE FUNCTION delete_task_owned_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_attempts WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM task_inputs WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_delete_owned_rows AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS deleted_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION delete_task_owned_rows();

-- The scheduler reads each job's queue head in (input event, created, task id) order: with the task id in the
-- index, that order is an index scan that stops after the few rows a pass takes (it sorted every queued task of
-- the job first whenever the planner's estimates were off, as on a new database: ~9 ms with 4,000 queued).
DROP INDEX tasks_queued_in_order;
CREATE INDEX tasks_queued_in_order ON tasks (job_id, input_event_id, created_at, task_id) WHERE status = 'Queued';
