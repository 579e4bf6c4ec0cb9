-- 0012: fewer rows per routed event (docs/ingest.md, "2026-12-03, evening").
--
-- 1. The router's to-do list is a table of its own.
-- An event was marked routed by setting `events.routed_at`, and the router found the unrouted ones through a partial
-- index on that column. An index naming the column makes every such update non-HOT: marking an event routed wrote a
-- new version of the whole row (payload included) and an entry in each of the table's other three indexes, and the
-- old version stayed behind for vacuum. The statement that stores events now also queues their ids here; a router
-- pass takes a batch of ids from the head of this table and deletes them in the statement that makes the tasks. An
-- event row is written once and never updated. An event is unrouted exactly while its id is queued.
CREATE TABLE unrouted_events (
    event_id bigint PRIMARY KEY  -- no foreign key: queued by the statement that stores the event
);

INSERT INTO unrouted_events (event_id) SELECT event_id FROM events WHERE routed_at IS NULL;
DROP INDEX events_unrouted;
ALTER TABLE events DROP COLUMN routed_at;

-- 2. Lineage is read, not stored. Every task has at most one input event (one task per incoming event, SPEC §4), named
-- by `tasks.input_event_id`; each lineage row copied it and its event's dataset and version, written by the
-- statement that made the task: one more row and two index entries per task. The view reads the same columns.
DROP TABLE task_inputs;
CREATE VIEW task_inputs AS
SELECT t.task_id, t.input_event_id AS event_id, e.dataset_uuid, e.dataset_version
FROM tasks t JOIN events e ON e.event_id = t.input_event_id;

-- A deleted task's events leave the queue with it; its lineage goes with its row.
CREATE OR REPLACE FUNCTION delete_task_owned_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_attempts WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM unrouted_events WHERE event_id IN (
        SELECT event_id FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks));
    DELETE FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    RETURN NULL;
END
$$;
