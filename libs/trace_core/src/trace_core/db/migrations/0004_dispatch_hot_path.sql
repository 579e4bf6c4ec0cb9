-- 0003: fewer index entries written by a task's hot transitions (Queued -> Dispatched -> Running -> Completed).
-- A status change is never a HOT update (status is indexed), so every full index on tasks gets a new entry
-- at each transition.

-- Nothing reads tasks by (job_id, status) that the (job_id, input_event_id) index does not serve as well.
DROP INDEX tasks_job_status;

-- Only PerPartition tasks carry a partition key; PerUpdate tasks no longer write entries here.
DROP INDEX tasks_live_partition;
CREATE INDEX tasks_live_partition ON tasks (job_id, partition_key, input_event_id)
    WHERE partition_key IS NOT NULL AND status IN ('Queued', 'Dispatched', 'Running');
