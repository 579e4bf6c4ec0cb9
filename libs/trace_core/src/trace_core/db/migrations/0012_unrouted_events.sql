-- 0012: the router's to-do list is a table of its own (docs/ingest.md, "2026-12-03 evening").
--
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

-- A deleted task's events leave the queue with it.
CREATE OR REPLACE FUNCTION delete_task_owned_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_attempts WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM unrouted_events WHERE event_id IN (
        SELECT event_id FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks));
    DELETE FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM task_inputs WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    RETURN NULL;
END
$$;
