-- 0010: range_aggregator and range_splitter run inside the dispatcher (docs/chain.md). Their jobs and tasks have
-- the runtime `dispatcher`, which no worker serves and no transport carries: the leader runs their queued tasks
-- in batches, each task's attempt started and finished in the transaction that applies it.

ALTER TABLE jobs DROP CONSTRAINT jobs_runtime_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_runtime_check CHECK (runtime IN ('ecs_python', 'lambda_py', 'dispatcher'));
ALTER TABLE tasks DROP CONSTRAINT tasks_runtime_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_runtime_check CHECK (runtime IN ('ecs_python', 'lambda_py', 'dispatcher'));

-- Jobs already deployed move with their operators. Their materialization is unchanged (same config, same state,
-- same manifests), so they keep their rows, dataset versions and operator state. They lease no slot: a pool an
-- older deploy gave them no longer applies.
UPDATE jobs SET runtime = 'dispatcher' WHERE operator IN ('range_aggregator', 'range_splitter');
UPDATE dag_version_jobs vj SET worker_pool = NULL
FROM jobs j
WHERE j.job_id = vj.job_id AND j.runtime = 'dispatcher' AND vj.worker_pool IS NOT NULL;

-- Their unfinished tasks wait for the dispatcher: dispatched ones leave the transport and give their slot back, a
-- running attempt ends (one more attempt is granted for the dispatcher's), a task asked to stop is Canceled. Running
-- a task again is safe: the aggregator saved each block's state with its manifests in one transaction, so a block
-- counted already emits nothing twice, and a splitter's re-emitted events dedupe. Finished tasks keep the runtime
-- they ran on.
WITH live AS (
    SELECT t.task_id FROM tasks t JOIN jobs j ON j.job_id = t.job_id
    WHERE j.runtime = 'dispatcher' AND t.status IN ('Queued', 'Dispatched', 'Running')
),
ended AS (
    UPDATE task_attempts SET status = 'Failed', error = 'its operator moved into the dispatcher (migration 0010)',
                             finished_at = now()
    WHERE task_id IN (SELECT task_id FROM live) AND status = 'Running'
),
released AS (DELETE FROM slot_leases WHERE task_id IN (SELECT task_id FROM live)),
dequeued AS (DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM live))
UPDATE tasks t
SET runtime = 'dispatcher',
    status = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'Canceled' ELSE 'Queued' END,
    finished_at = CASE WHEN t.cancel_requested_at IS NOT NULL THEN now() END,
    not_before = CASE WHEN t.status = 'Queued' THEN t.not_before ELSE now() END,
    dispatched_at = NULL,
    max_attempts = greatest(t.max_attempts, t.attempt_count + 1),
    updated_at = now()
FROM live
WHERE t.task_id = live.task_id;

-- The dispatcher runs exactly these operators, and its tasks are never handed out: an attempt of one starts and
-- finishes inside one transaction, so no other session ever sees such a task Dispatched or Running.
ALTER TABLE jobs ADD CONSTRAINT jobs_dispatcher_operators
    CHECK ((runtime = 'dispatcher') = (operator IN ('range_aggregator', 'range_splitter')));
ALTER TABLE tasks ADD CONSTRAINT tasks_dispatcher_never_handed_out
    CHECK (runtime <> 'dispatcher' OR status NOT IN ('Dispatched', 'Running'));
