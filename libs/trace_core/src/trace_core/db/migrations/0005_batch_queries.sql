-- 0005: batch queries (SPEC §5). A batch query runs as a task of its org's system DAG `_queries`, and its
-- `queries` row follows that task.

-- System DAGs belong to the platform, not to a deploy. Their names start with `_`, which a user DAG's name
-- cannot, so they never collide with a user's DAG.
ALTER TABLE dags ADD COLUMN system boolean NOT NULL DEFAULT false;
ALTER TABLE dags DROP CONSTRAINT dags_dag_name_check;
ALTER TABLE dags ADD CONSTRAINT dags_dag_name_check CHECK (
    CASE WHEN system THEN dag_name ~ '^_[a-z][a-z0-9_]{0,62}$' ELSE dag_name ~ '^[a-z][a-z0-9_]{0,63}$' END
);

-- What a query asked for (a batch query's task runs with it), when it started, and its result's shape. The task
-- of a batch query points at its query (tasks.query_id), not the other way round.
ALTER TABLE queries
    DROP COLUMN task_id,
    ADD COLUMN max_rows bigint CHECK (max_rows >= 1),
    ADD COLUMN timeout_s double precision CHECK (timeout_s > 0),
    ADD COLUMN format text CHECK (format IN ('json', 'arrow', 'csv')),
    ADD COLUMN truncated boolean,
    ADD COLUMN result_columns jsonb,
    ADD COLUMN started_at timestamptz,
    ADD CONSTRAINT queries_batch_limits
        CHECK (mode <> 'batch' OR (max_rows IS NOT NULL AND timeout_s IS NOT NULL AND format IS NOT NULL));

-- A batch query's task: one per query, with no input event, and not a source run (a job of the system DAG has
-- one task per query, many live at once).
ALTER TABLE tasks
    ADD COLUMN query_id uuid,
    ADD CONSTRAINT tasks_query_fk FOREIGN KEY (query_id) REFERENCES queries ON DELETE CASCADE,
    ADD CONSTRAINT tasks_query_has_no_event CHECK (query_id IS NULL OR input_event_id IS NULL);
-- partial: the other tasks write no entry here
CREATE UNIQUE INDEX tasks_one_per_query ON tasks (query_id) WHERE query_id IS NOT NULL;
DROP INDEX tasks_one_live_source_run;
CREATE UNIQUE INDEX tasks_one_live_source_run ON tasks (job_id)
    WHERE input_event_id IS NULL AND query_id IS NULL AND status IN ('Queued', 'Dispatched', 'Running');

-- A batch query follows its task: every change of the task's status (task-fetch, completion, retry, the reaper,
-- cancel) moves the query too, so no path that moves tasks can leave a query behind, and no hot statement of
-- the dispatcher carries query bookkeeping. Dispatched is still Queued to the query's owner. A task completed
-- without recording a result (only the duckdb_query operator records one) fails its query.
CREATE FUNCTION follow_query_task() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE queries
    SET status = CASE NEW.status
                     WHEN 'Dispatched' THEN 'Queued'
                     WHEN 'Completed' THEN CASE WHEN result_location IS NULL THEN 'Failed' ELSE 'Completed' END
                     ELSE NEW.status END,
        error = CASE WHEN NEW.status <> 'Completed' THEN NEW.last_error
                     WHEN result_location IS NULL THEN 'the task completed without recording a result' END,
        started_at = CASE WHEN NEW.status = 'Running' THEN coalesce(started_at, now()) ELSE started_at END,
        finished_at = CASE WHEN NEW.status IN ('Completed', 'Failed', 'Canceled') THEN now() END
    WHERE query_id = NEW.query_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_follow_query AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.query_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION follow_query_task();
