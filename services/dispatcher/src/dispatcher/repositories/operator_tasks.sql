-- Tasks of the operators the dispatcher runs itself (runtime `dispatcher`): taken in batches by the leader's
-- operator loop, each attempt started and finished in the transaction that applies it.

-- name: lock_operator_runs --
-- One batch at a time, across replicas too: a leader that lost its lock may still be finishing one, and a job's
-- tasks must be applied in event order.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: ready_operator_tasks --
-- The oldest queued tasks of each such job of a DAG's active or rebuilding version (a retired job's tasks stay
-- parked, as the scheduler leaves them), in event order, locked against cancels, with their input events.
WITH runnable AS (
    SELECT DISTINCT j.job_id, j.org_id, j.operator, j.config
    FROM dags d
    JOIN dag_version_jobs vj ON vj.dag_version_id IN (d.active_version_id, d.rebuilding_version_id)
    JOIN jobs j ON j.job_id = vj.job_id
    WHERE j.runtime = 'dispatcher'
)
SELECT r.job_id, r.org_id, r.operator, r.config, t.task_id, t.not_before <= now() AS ready, e.kind, e.range_start,
       e.range_end
FROM runnable r
CROSS JOIN LATERAL (
    SELECT t.task_id, t.not_before, t.input_event_id, t.created_at
    FROM tasks t
    WHERE t.job_id = r.job_id AND t.status = 'Queued'
    ORDER BY t.input_event_id, t.created_at, t.task_id
    LIMIT %(limit)s
    FOR UPDATE
) t
LEFT JOIN events e ON e.event_id = t.input_event_id
ORDER BY r.job_id, t.input_event_id, t.created_at, t.task_id;

-- name: record_operator_attempts --
-- Each task's attempt, started and finished now by the dispatcher, and the task Completed or Failed with it. The
-- attempt's token is a hash of nothing anyone holds: no call of the internal API can claim it.
WITH incoming AS (
    SELECT * FROM unnest(%(task_ids)b::uuid[], %(errors)b::text[]) AS i(task_id, error)
),
finished AS (
    UPDATE tasks t
    SET status = CASE WHEN i.error IS NULL THEN 'Completed' ELSE 'Failed' END,
        attempt_count = t.attempt_count + 1,
        last_error = i.error,
        finished_at = now(),
        updated_at = now()
    FROM incoming i
    WHERE t.task_id = i.task_id
    RETURNING t.task_id, t.attempt_count, i.error
)
INSERT INTO task_attempts (task_id, attempt_number, attempt_token_hash, status, lease_expires_at, worker_id, error,
                           finished_at)
SELECT task_id, attempt_count, sha256(uuid_send(gen_random_uuid())),
       CASE WHEN error IS NULL THEN 'Succeeded' ELSE 'Failed' END, now(), 'dispatcher', error, now()
FROM finished
RETURNING task_id, attempt_id;
