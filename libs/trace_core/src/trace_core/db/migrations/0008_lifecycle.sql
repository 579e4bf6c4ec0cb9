-- 0008: the deploy lifecycle (SPEC §6): what each deploy changed, a rebuild's catch-up rounds, versions that
-- continue another version's storage (?rematerialize=none), and the indexes the catch-up check reads.

-- `changes`: the deploy's diff against the version it replaced (changed, added, removed and rebuilt jobs).
-- A rebuild catches up in rounds: events from outside the rebuild with ids up to `rebuild_target_event_id`
-- become its tasks (`rebuild_backfilled_event_id` says how far that went); newer ones wait for the next
-- round or the cutover. `rebuild_error` says why a caught-up rebuild could not cut over.
ALTER TABLE dag_versions
    ADD COLUMN changes jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN rebuild_target_event_id bigint,
    ADD COLUMN rebuild_backfilled_event_id bigint,
    ADD COLUMN rebuild_round integer NOT NULL DEFAULT 0 CHECK (rebuild_round >= 0),
    ADD COLUMN rebuild_round_started_at timestamptz,
    ADD COLUMN rebuild_error text,
    ADD CONSTRAINT dag_versions_rebuild_backfill_within_target
        CHECK (rebuild_backfilled_event_id <= rebuild_target_event_id);

-- A version written by a job deployed with ?rematerialize=none shares the storage of the version it continues.
ALTER TABLE dataset_versions
    ADD COLUMN continues_version uuid REFERENCES dataset_versions DEFERRABLE INITIALLY DEFERRED;

-- The catch-up check asks "has a rebuilding job a task that failed or was canceled?" on every pass: failures
-- are rare, so this index is small and a task's normal transitions never touch it.
CREATE INDEX tasks_ended_badly ON tasks (job_id) WHERE status IN ('Failed', 'Canceled');

-- The partition a task of a PerPartition job runs in: the router and a rebuild's backfill both use it.
CREATE FUNCTION task_partition_key(execution_strategy text, partition_key text, range_start bigint,
                                   range_end bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN execution_strategy = 'PerPartition'
                THEN coalesce(partition_key, range_start || '-' || range_end, '') END
$$;

-- Where an event's scope stands in its stream, when that is a number: a range's end, or a cursor of digits.
-- Rebuild progress compares it against the head of an input; other scopes (partition keys) have none.
CREATE FUNCTION scope_position(scope_cursor text, range_end bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(range_end, CASE WHEN scope_cursor ~ '^[0-9]{1,18}$' THEN scope_cursor::bigint END)
$$;

-- The dataset version each job input reads: the one its upstream job writes, or (another DAG's published
-- dataset) the version that DAG's readers see now. Backfills, the catch-up check and progress read inputs here.
CREATE VIEW job_input_versions AS
SELECT ji.job_id, ji.input_index, ji.dataset_uuid, ji.upstream_job_id,
       coalesce(uv.dataset_version, cur.dataset_version) AS dataset_version
FROM job_inputs ji
LEFT JOIN dataset_versions uv ON uv.job_id = ji.upstream_job_id AND uv.dataset_uuid = ji.dataset_uuid
LEFT JOIN current_dataset_versions cur ON ji.upstream_job_id IS NULL AND cur.dataset_uuid = ji.dataset_uuid;
