-- Array parameters go in binary (`%(name)b`): psycopg builds a text array element by element in Python,
-- about seven times slower (0.8 ms for 256 task ids), and a batch sends one array per column.

-- name: insert_source_run --
-- A source job's run: one live task per job (tasks_one_live_source_run).
INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, runtime, max_attempts)
VALUES (%(org_id)s, %(dag_id)s, %(version_id)s, %(job_id)s, %(runtime)s, %(max_attempts)s)
ON CONFLICT DO NOTHING
RETURNING task_id;

-- name: latest_source_run --
SELECT task_id, status, attempt_count, max_attempts FROM tasks
WHERE job_id = %(job_id)s AND input_event_id IS NULL
ORDER BY created_at DESC LIMIT 1
FOR UPDATE;

-- name: reopen_source_run --
-- Restarting an ended source run reopens the same task, so the events its new attempts re-emit dedupe.
UPDATE tasks SET status = 'Queued', finished_at = NULL, not_before = now(), cancel_requested_at = NULL,
                 max_attempts = attempt_count + %(max_attempts)s, last_error = NULL, updated_at = now()
WHERE task_id = %(task_id)s
RETURNING task_id;

-- name: plan_router_pass --
-- The queue `unrouted_events` is read by a plain scan of its primary key, never a bitmap scan: routing an event
-- leaves a dead entry there until vacuum, and only a plain index scan marks it dead for the scans after it, so each
-- bitmap scan (which the planner picks when it expects few queued events) read every entry left since the last
-- vacuum and their heap pages (~7 ms a pass after 10,000 events).
SET LOCAL enable_bitmapscan = off;

-- name: route_events --
-- One pass of the router: a batch of unrouted events becomes one task per subscribed job and event. The tasks of the
-- dispatcher's own operators are inserted Completed, each with its attempt, when the pass applies them itself
-- (loops/operators.py, `apply_routed`, before the commit, amends those that fail or wait); they come back as rows.
-- The batch is the head of the queue `unrouted_events`, which the pass deletes: the events themselves are only read.
WITH queued AS (
    SELECT event_id FROM unrouted_events ORDER BY event_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
),
batch AS (
    -- each queued event by primary key (see `subscribers`)
    SELECT e.*
    FROM queued q
    CROSS JOIN LATERAL (
        SELECT e.event_id, e.dataset_uuid, e.dataset_version, e.kind, e.partition_key, e.range_start, e.range_end,
               e.scope_cursor
        FROM events e WHERE e.event_id = q.event_id OFFSET 0
    ) e
),
producer AS (
    SELECT b.*, dv.job_id AS producer_job_id
    FROM batch b JOIN dataset_versions dv USING (dataset_uuid, dataset_version)
),
subscribers AS (
    -- the event's columns ride along (as far as `marked`): joining two CTEs back together is a nested loop over
    -- both under a generic plan, which guesses a handful of rows for each
    -- inputs wired to the output (of the job materialization) that wrote this version (same DAG)
    SELECT p.*, ji.job_id
    FROM producer p JOIN job_inputs ji ON ji.upstream_job_id = p.producer_job_id AND ji.dataset_uuid = p.dataset_uuid
    UNION
    -- inputs reading another DAG's published dataset: only events of its current version
    SELECT p.*, ji.job_id
    FROM producer p
    JOIN job_inputs ji ON ji.upstream_job_id IS NULL AND ji.dataset_uuid = p.dataset_uuid
    JOIN datasets ds ON ds.dataset_uuid = p.dataset_uuid
    JOIN dags pd ON pd.dag_id = ds.dag_id
    JOIN pointer_set_entries pe ON pe.pointer_set_id = pd.active_pointer_set_id
        AND pe.dataset_uuid = p.dataset_uuid AND pe.dataset_version = p.dataset_version
),
targets AS (
    -- only jobs of a DAG's active or rebuilding version subscribe; the newest version's settings win. A job a
    -- rebuild builds takes the events of its rebuilt reactive jobs at once, and others (from outside the rebuild,
    -- or a rebuilt source) only up to the round's target: newer ones wait in Postgres for the next round or the
    -- cutover, which turn them into its tasks (lifecycle/cutover.py).
    SELECT DISTINCT ON (s.event_id, s.job_id)
           s.event_id, s.job_id, j.org_id, j.dag_id, vj.dag_version_id, j.runtime, j.execution_strategy,
           vj.max_attempts, s.dataset_uuid, s.dataset_version, s.kind, s.partition_key, s.range_start, s.range_end
    FROM subscribers s
    JOIN jobs j ON j.job_id = s.job_id
    JOIN dags d ON d.dag_id = j.dag_id
    JOIN dag_version_jobs vj ON vj.job_id = j.job_id
        AND vj.dag_version_id IN (d.active_version_id, d.rebuilding_version_id)
    LEFT JOIN dag_versions rv ON vj.rebuilds AND rv.dag_version_id = vj.dag_version_id
        AND rv.dag_version_id = d.rebuilding_version_id
    WHERE rv.dag_version_id IS NULL
       OR s.event_id <= rv.rebuild_target_event_id
       OR EXISTS (SELECT 1 FROM dag_version_jobs pv JOIN jobs pj ON pj.job_id = pv.job_id
                  WHERE pv.dag_version_id = rv.dag_version_id AND pv.job_id = s.producer_job_id AND pv.rebuilds
                    AND pj.activation = 'reactive')
    ORDER BY s.event_id, s.job_id, (vj.dag_version_id = d.rebuilding_version_id) DESC
),
marked AS MATERIALIZED (
    -- `applied`: the pass applies the task itself. So are those of the dispatcher's own operators (runtime
    -- `dispatcher`), when the job has no queued task (waiting for the operator loop, or for its retry time) that the
    -- event would overtake, and no task for the event yet (a take-over makes tasks of unrouted events); the pass
    -- holds the operator lock, so no such task appears before it commits. Every column the statement needs later is
    -- carried here, ids too: the planner guesses one row per CTE, and CTEs joined to each other were nested loops
    -- over 1,000 × 1,000 rows.
    SELECT t.event_id, t.job_id, t.org_id, t.dag_id, t.dag_version_id, t.runtime, t.max_attempts,
           task_partition_key(t.execution_strategy, t.partition_key, t.range_start, t.range_end) AS partition_key,
           t.dataset_uuid, t.dataset_version, t.kind, t.range_start, t.range_end,
           %(applying)s AND t.runtime = 'dispatcher'
               AND NOT EXISTS (SELECT 1 FROM tasks q WHERE q.job_id = t.job_id AND q.status = 'Queued')
               AND NOT EXISTS (SELECT 1 FROM tasks q WHERE q.job_id = t.job_id AND q.input_event_id = t.event_id)
               AS applied,
           gen_random_uuid() AS task_id, gen_random_uuid() AS attempt_id
    FROM targets t
),
inserted AS (
    INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, input_event_id, runtime, partition_key,
                       max_attempts)
    SELECT org_id, dag_id, dag_version_id, job_id, event_id, runtime, partition_key, max_attempts
    FROM marked
    WHERE NOT applied
    ON CONFLICT (job_id, input_event_id) DO NOTHING
    RETURNING task_id, input_event_id
),
applied_tasks AS (
    -- no ON CONFLICT: `marked` saw no task of the event, and a conflict undoes the pass rather than leave its attempt
    -- and events without their task
    INSERT INTO tasks (task_id, org_id, dag_id, dag_version_id, job_id, input_event_id, runtime, partition_key,
                       max_attempts, status, attempt_count, finished_at)
    SELECT task_id, org_id, dag_id, dag_version_id, job_id, event_id, runtime, partition_key, max_attempts,
           'Completed', 1, now()
    FROM marked
    WHERE applied
),
applied_attempts AS (
    -- a token hash of nothing anyone holds: no call of the internal API can claim the attempt
    INSERT INTO task_attempts (attempt_id, task_id, attempt_number, attempt_token_hash, status, lease_expires_at,
                               worker_id, finished_at)
    SELECT attempt_id, task_id, 1, sha256(uuid_send(gen_random_uuid())), 'Succeeded', now(), 'dispatcher', now()
    FROM marked
    WHERE applied
),
routed AS (
    DELETE FROM unrouted_events WHERE event_id = ANY(ARRAY(SELECT event_id FROM queued))
),
counts AS (
    SELECT (SELECT count(*) FROM queued) AS events, (SELECT count(*) FROM inserted) AS tasks
)
-- the counts, with each applied task (one row of nulls when there is none), by job then event; the job's config as
-- text, parsed once per job
SELECT c.events, c.tasks, m.job_id, m.event_id, m.task_id, m.attempt_id, m.org_id, m.kind, m.range_start,
       m.range_end, j.operator, j.config::text AS config
FROM counts c
LEFT JOIN (marked m JOIN jobs j ON j.job_id = m.job_id) ON m.applied
ORDER BY m.job_id, m.event_id;

-- name: amend_applied_tasks --
-- The tasks of a router pass that did not complete (loops/operators.py, `apply_routed`): failed ones (`error`) with
-- their attempt; those past the pass's event budget (`error` null) back to Queued without one, for the operator loop.
WITH incoming AS (
    SELECT * FROM unnest(%(task_ids)b::uuid[], %(errors)b::text[]) AS i(task_id, error)
),
attempts AS (
    UPDATE task_attempts a SET status = 'Failed', error = i.error
    FROM incoming i WHERE a.task_id = i.task_id AND i.error IS NOT NULL AND a.task_id = ANY(%(task_ids)b::uuid[])
),
dropped AS (
    DELETE FROM task_attempts a USING incoming i
    WHERE a.task_id = i.task_id AND i.error IS NULL AND a.task_id = ANY(%(task_ids)b::uuid[])
)
UPDATE tasks t
SET status = CASE WHEN i.error IS NULL THEN 'Queued' ELSE 'Failed' END, last_error = i.error,
    attempt_count = CASE WHEN i.error IS NULL THEN 0 ELSE 1 END,
    finished_at = CASE WHEN i.error IS NULL THEN NULL ELSE t.finished_at END
FROM incoming i
WHERE t.task_id = i.task_id AND t.task_id = ANY(%(task_ids)b::uuid[]);

-- name: dispatch_ready_tasks --
-- One pass of the scheduler for one runtime: pick ready tasks within every limit (runtime in-flight,
-- job concurrency, PerPartition order, worker-pool slots), lease their slots and mark them Dispatched.
WITH job_settings AS (
    -- the execution settings in force for each job: its DAG's newest version (rebuilding, else active), since
    -- execution-only edits apply at once
    SELECT DISTINCT ON (vj.job_id)
           vj.job_id, vj.worker_pool, vj.timeout_s, d.dag_id,
           CASE WHEN vj.worker_pool IS NULL THEN vj.max_concurrency
                ELSE least(vj.max_concurrency, (
                    SELECT count(*) FROM worker_pool_slots s
                    WHERE s.dag_id = d.dag_id AND s.pool_name = vj.worker_pool AND s.retired_at IS NULL))
           END AS capacity
    FROM dags d
    JOIN dag_version_jobs vj ON vj.dag_version_id IN (d.active_version_id, d.rebuilding_version_id)
    ORDER BY vj.job_id, (vj.dag_version_id = d.rebuilding_version_id) DESC
),
in_flight AS (
    SELECT job_id, count(*) AS n FROM tasks
    WHERE status IN ('Dispatched', 'Running') AND runtime = %(runtime)s
    GROUP BY job_id
),
room AS (
    -- what this pass may dispatch, and how many queued tasks wait for their retry time
    SELECT greatest(0, least(%(limit)s, %(inflight_limit)s - coalesce((SELECT sum(n) FROM in_flight), 0))) AS n,
           (SELECT count(*) FROM tasks
            WHERE status = 'Queued' AND runtime = %(runtime)s AND not_before > now()) AS waiting
),
candidates AS (
    -- PerUpdate: the oldest queued tasks of each job, as many as it has room for. A task waiting for its
    -- retry keeps its place: what comes after it in its job (or partition) waits too. No job needs more
    -- candidates than the pass may take plus those that may be waiting (each hides one behind it): reading
    -- no further keeps a pass's cost independent of the queue's depth. A job's tasks are all source runs or
    -- all reactive, so ordering by input event needs no NULLS FIRST (which the index could not serve).
    SELECT c.*, s.dag_id, s.worker_pool, s.timeout_s
    FROM job_settings s
    CROSS JOIN room r
    LEFT JOIN in_flight f ON f.job_id = s.job_id
    CROSS JOIN LATERAL (
        SELECT t.task_id, t.job_id, t.not_before, t.created_at, t.ctid AS row_id
        FROM tasks t
        WHERE t.job_id = s.job_id AND t.status = 'Queued' AND t.runtime = %(runtime)s AND t.partition_key IS NULL
        ORDER BY t.input_event_id, t.created_at, t.task_id
        LIMIT least(greatest(0, s.capacity - coalesce(f.n, 0)), r.n + r.waiting)
    ) c
    UNION ALL
    -- PerPartition: the oldest queued task of each partition with nothing in flight
    SELECT c.task_id, c.job_id, c.not_before, c.created_at, c.row_id, s.dag_id, s.worker_pool, s.timeout_s
    FROM job_settings s
    LEFT JOIN in_flight f ON f.job_id = s.job_id
    CROSS JOIN LATERAL (
        SELECT h.* FROM (
            SELECT DISTINCT ON (t.partition_key) t.task_id, t.job_id, t.partition_key, t.not_before,
                   t.created_at, t.input_event_id, t.ctid AS row_id
            FROM tasks t
            WHERE t.job_id = s.job_id AND t.status = 'Queued' AND t.runtime = %(runtime)s
              AND t.partition_key IS NOT NULL
            ORDER BY t.partition_key, t.input_event_id, t.created_at
        ) h
        WHERE NOT EXISTS (
            SELECT 1 FROM tasks b
            WHERE b.job_id = h.job_id AND b.partition_key = h.partition_key AND b.status IN ('Dispatched', 'Running')
        )
        ORDER BY h.input_event_id
        LIMIT greatest(0, s.capacity - coalesce(f.n, 0))
    ) c
),
picked AS (
    SELECT c.task_id, c.row_id, c.job_id, c.dag_id, c.worker_pool, c.timeout_s
    FROM candidates c
    WHERE c.not_before <= now()
    ORDER BY c.not_before, c.created_at
    LIMIT (SELECT n FROM room)
),
free_slots AS (
    SELECT s.slot_id, s.dag_id, s.pool_name,
           row_number() OVER (PARTITION BY s.dag_id, s.pool_name ORDER BY s.slot_index) AS n
    FROM worker_pool_slots s
    WHERE s.retired_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM slot_leases l WHERE l.slot_id = s.slot_id)
      AND (s.dag_id, s.pool_name) IN (SELECT dag_id, worker_pool FROM picked)
),
wanting AS (
    SELECT p.*, row_number() OVER (PARTITION BY p.dag_id, p.worker_pool ORDER BY p.task_id) AS n
    FROM picked p WHERE p.worker_pool IS NOT NULL
),
leased AS (
    INSERT INTO slot_leases (slot_id, task_id, expires_at)
    SELECT f.slot_id, w.task_id, now() + make_interval(secs => w.timeout_s + %(dispatch_timeout_s)s)
    FROM wanting w JOIN free_slots f ON f.dag_id = w.dag_id AND f.pool_name = w.worker_pool AND f.n = w.n
    RETURNING task_id
),
dispatched AS (
    -- The picked rows by their row ids, a TID scan whatever the plan: as `task_id IN (SELECT ...)`, a generic plan
    -- read every queued task and compared it with each picked one, and `task_id = ANY(...)` took the queue-head
    -- index (the task id is its last column) once per task. The status is checked through a CASE so that no partial
    -- index on `status = 'Queued'` is a candidate. A row updated since the pass read it is rechecked in its new
    -- version, as before.
    UPDATE tasks t SET status = 'Dispatched', dispatched_at = clock_timestamp(), updated_at = now()
    WHERE t.ctid = ANY(ARRAY(SELECT row_id FROM picked WHERE worker_pool IS NULL
                             UNION ALL SELECT p.row_id FROM leased l JOIN picked p ON p.task_id = l.task_id))
      AND CASE WHEN t.status = 'Queued' THEN true ELSE false END
    RETURNING t.task_id, t.runtime, t.input_event_id, t.dispatched_at
),
enqueued AS (
    INSERT INTO transport_queue (task_id, runtime)
    SELECT task_id, runtime FROM dispatched WHERE %(embedded)s
)
SELECT d.task_id, extract(epoch FROM d.dispatched_at - e.created_at)::float8 AS latency_s
FROM dispatched d LEFT JOIN events e ON e.event_id = d.input_event_id;

-- name: undispatch --
-- The transport refused these task ids, or the worker holding them stopped before starting them: back to the
-- queue, slots released. A task whose attempt started is left as it is.
WITH back AS (
    UPDATE tasks SET status = 'Queued', dispatched_at = NULL, not_before = now() + interval '1 second',
                     updated_at = now()
    WHERE task_id = ANY(%(task_ids)b) AND status = 'Dispatched'
    RETURNING task_id
),
released AS (DELETE FROM slot_leases WHERE task_id IN (SELECT task_id FROM back))
SELECT count(*) AS n FROM back;

-- name: take_from_transport_queue --
DELETE FROM transport_queue WHERE task_id IN (
    SELECT task_id FROM transport_queue WHERE runtime = %(runtime)s
    ORDER BY enqueued_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING task_id;

-- name: extend_lease --
UPDATE task_attempts SET lease_expires_at = %(lease_expires_at)s
WHERE attempt_id = %(attempt_id)s
RETURNING lease_expires_at;

-- name: reap_expired_attempts --
-- The reaper: attempts whose lease ran out are TimedOut; their tasks retry with backoff, or are Failed
-- after max_attempts, or Canceled when a cancel was asked for. Slots are released.
WITH expired AS (
    UPDATE task_attempts a SET status = 'TimedOut', error = 'lease expired: no heartbeat before '
                                   || to_char(a.lease_expires_at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                               finished_at = now()
    FROM tasks t
    WHERE a.task_id = t.task_id AND a.status = 'Running' AND a.lease_expires_at < now()
      AND t.status = 'Running'
      AND a.attempt_number = t.attempt_count
    RETURNING a.task_id
),
tasks_after AS (
    UPDATE tasks t
    SET status = CASE WHEN t.cancel_requested_at IS NOT NULL THEN 'Canceled'
                      WHEN t.attempt_count >= t.max_attempts THEN 'Failed'
                      ELSE 'Queued' END,
        last_error = 'attempt ' || t.attempt_count || ' timed out (lease expired)',
        not_before = now() + make_interval(secs => least(%(max_s)s, %(base_s)s * 2 ^ (t.attempt_count - 1))
                                                   * (0.5 + random() / 2)),
        finished_at = CASE WHEN t.cancel_requested_at IS NOT NULL OR t.attempt_count >= t.max_attempts
                           THEN now() END,
        dispatched_at = NULL,
        updated_at = now()
    FROM expired e WHERE t.task_id = e.task_id
    RETURNING t.task_id, t.status
),
released AS (DELETE FROM slot_leases WHERE task_id IN (SELECT task_id FROM tasks_after))
SELECT status, count(*) AS n FROM tasks_after GROUP BY status;

-- name: requeue_stale_dispatches --
-- Dispatched task ids no worker started in time (a lost message or a worker that died before fetching).
WITH stale AS (
    UPDATE tasks SET status = 'Queued', dispatched_at = NULL, updated_at = now()
    WHERE status = 'Dispatched' AND dispatched_at < now() - make_interval(secs => %(dispatch_timeout_s)s)
    RETURNING task_id
),
released AS (DELETE FROM slot_leases WHERE task_id IN (SELECT task_id FROM stale)),
dequeued AS (DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM stale))
SELECT count(*) AS n FROM stale;

-- name: release_orphan_leases --
-- Each lease's task by primary key: joined, the few leases made a hash join over every task ever run (~28 ms a
-- sweep once a backfill left 50,000 tasks behind; a lease's task always exists, its foreign key cascades).
DELETE FROM slot_leases l
WHERE (SELECT t.status FROM tasks t WHERE t.task_id = l.task_id) NOT IN ('Dispatched', 'Running')
RETURNING l.slot_id;

-- name: request_cancel --
SELECT t.task_id, t.status, t.org_id FROM tasks t WHERE t.task_id = %(task_id)s FOR UPDATE;

-- name: mark_cancel_requested --
UPDATE tasks SET cancel_requested_at = coalesce(cancel_requested_at, now()), updated_at = now()
WHERE task_id = %(task_id)s
RETURNING status;

-- name: list_tasks --
-- Tasks of system DAGs (users' batch queries, whose errors quote their SQL) only for admins.
SELECT t.task_id, d.dag_name, vj.job_name, t.status, t.attempt_count, t.max_attempts, t.partition_key,
       t.input_event_id, t.created_at, t.updated_at, t.finished_at, t.last_error
FROM tasks t
JOIN dags d ON d.dag_id = t.dag_id
JOIN dag_version_jobs vj ON vj.dag_version_id = t.dag_version_id AND vj.job_id = t.job_id
WHERE t.org_id = %(org_id)s AND (NOT d.system OR %(is_admin)s)
  AND (%(dag)s::text IS NULL OR d.dag_name = %(dag)s)
  AND (%(job)s::text IS NULL OR vj.job_name = %(job)s)
  AND (%(status)s::text IS NULL OR t.status = %(status)s)
  AND (%(after_created)s::timestamptz IS NULL OR (t.created_at, t.task_id) < (%(after_created)s, %(after_id)s))
ORDER BY t.created_at DESC, t.task_id DESC
LIMIT %(limit)s;

-- name: task_detail --
SELECT t.task_id, d.dag_name, vj.job_name, t.status, t.attempt_count, t.max_attempts, t.partition_key,
       t.input_event_id, t.created_at, t.updated_at, t.dispatched_at, t.finished_at, t.last_error,
       t.cancel_requested_at, t.not_before,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'attempt_id', a.attempt_id, 'attempt_number', a.attempt_number, 'status', a.status,
            'worker_id', a.worker_id, 'error', a.error, 'started_at', a.started_at, 'finished_at', a.finished_at,
            'lease_expires_at', a.lease_expires_at) ORDER BY a.attempt_number), '[]')
        FROM task_attempts a WHERE a.task_id = t.task_id) AS attempts,
       (SELECT count(*) FROM events e WHERE e.producer_task_id = t.task_id) AS events_emitted
FROM tasks t
JOIN dags d ON d.dag_id = t.dag_id
JOIN dag_version_jobs vj ON vj.dag_version_id = t.dag_version_id AND vj.job_id = t.job_id
WHERE t.task_id = %(task_id)s AND t.org_id = %(org_id)s AND (NOT d.system OR %(is_admin)s);

-- name: source_job --
SELECT j.job_id, j.org_id, j.dag_id, j.runtime, j.activation, vj.max_attempts, d.active_version_id
FROM dags d
JOIN dag_version_jobs vj ON vj.dag_version_id = d.active_version_id
JOIN jobs j ON j.job_id = vj.job_id
WHERE d.org_id = %(org_id)s AND d.dag_name = %(dag_name)s AND vj.job_name = %(job_name)s;

-- name: task_counts --
SELECT runtime, status, count(*) AS n FROM tasks
WHERE status IN ('Queued', 'Dispatched', 'Running')
GROUP BY runtime, status;

-- name: ready_depth --
SELECT runtime, count(*) AS n FROM tasks WHERE status = 'Queued' AND not_before <= now() GROUP BY runtime;

-- name: restart_running_source_run --
-- Restarting a live source run: its attempt ends now (the worker learns it at its next heartbeat) and the
-- same task goes back to the queue for a new attempt.
WITH ended AS (
    UPDATE task_attempts SET status = 'Failed', error = 'restarted on request', finished_at = now()
    WHERE task_id = %(task_id)s AND status = 'Running'
),
released AS (DELETE FROM slot_leases WHERE task_id = %(task_id)s),
dequeued AS (DELETE FROM transport_queue WHERE task_id = %(task_id)s)
UPDATE tasks SET status = 'Queued', dispatched_at = NULL, not_before = now(), updated_at = now(),
                 max_attempts = greatest(max_attempts, attempt_count + %(max_attempts)s)
WHERE task_id = %(task_id)s;

-- name: lock_tasks --
-- Batched task-fetch: the tasks, locked in a fixed order so concurrent batches cannot deadlock.
SELECT task_id, status, cancel_requested_at, attempt_count, max_attempts FROM tasks
WHERE task_id = ANY(%(task_ids)b)
ORDER BY task_id
FOR UPDATE;

-- name: cancel_tasks --
-- Queued or dispatched tasks canceled at once: slots released, transport entries dropped.
WITH released AS (DELETE FROM slot_leases WHERE task_id = ANY(%(task_ids)b)),
dequeued AS (DELETE FROM transport_queue WHERE task_id = ANY(%(task_ids)b))
UPDATE tasks SET status = 'Canceled', cancel_requested_at = coalesce(cancel_requested_at, now()),
                 finished_at = now(), updated_at = now()
WHERE task_id = ANY(%(task_ids)b);

-- name: supersede_running_attempts --
-- A duplicate delivery or a restart starts a new attempt: the running one ends here (a statement of its own:
-- the new attempt's insert must see it ended, and the CTEs of one statement share a snapshot).
UPDATE task_attempts SET status = 'Failed', error = 'superseded by a new attempt', finished_at = now()
WHERE task_id = ANY(%(task_ids)b) AND status = 'Running';

-- name: start_attempts --
WITH incoming AS (
    SELECT * FROM unnest(%(task_ids)b::uuid[], %(numbers)b::int[], %(token_hashes)b::bytea[], %(worker_ids)b::text[],
                         %(leases_s)b::float8[])
        AS i(task_id, attempt_number, token_hash, worker_id, lease_s)
),
attempts AS (
    INSERT INTO task_attempts (task_id, attempt_number, attempt_token_hash, lease_expires_at, worker_id)
    SELECT task_id, attempt_number, token_hash, now() + make_interval(secs => lease_s), worker_id
    FROM incoming
    RETURNING task_id, attempt_id, lease_expires_at
),
started AS (
    UPDATE tasks t SET status = 'Running', attempt_count = i.attempt_number, updated_at = now()
    FROM incoming i WHERE t.task_id = i.task_id AND t.task_id = ANY(%(task_ids)b::uuid[])
)
SELECT task_id, attempt_id, lease_expires_at FROM attempts;

-- name: gate_attempts --
-- Each task and its newest attempt, locked in a fixed order (so concurrent batches cannot deadlock): every
-- call an attempt makes is checked against this.
SELECT t.task_id, t.status AS task_status, t.cancel_requested_at, t.attempt_count, t.max_attempts, t.org_id,
       t.job_id, vj.job_name, t.query_id, a.attempt_id, a.attempt_number, a.attempt_token_hash,
       a.status AS attempt_status, a.started_at,
       a.lease_expires_at, j.activation, vj.timeout_s,
       (SELECT count(*) FROM dataset_versions dv WHERE dv.job_id = t.job_id) AS output_count
FROM tasks t
JOIN jobs j ON j.job_id = t.job_id
JOIN dag_version_jobs vj ON vj.dag_version_id = t.dag_version_id AND vj.job_id = t.job_id
LEFT JOIN LATERAL (
    SELECT * FROM task_attempts WHERE task_id = t.task_id ORDER BY attempt_number DESC LIMIT 1
) a ON true
WHERE t.task_id = ANY(%(task_ids)b)
ORDER BY t.task_id
FOR UPDATE OF t;

-- name: insert_events_of_tasks --
-- Events of several attempts at once, deduplicated on (producer task, dataset, scope). Nothing here joins two
-- relations that grow with the batch: the planner cannot see how many rows an unnest gives (a prepared statement's
-- generic plan assumes 10), and joined to each other the events and their producers (or the inserted rows) made a
-- nested loop that compared every event with every producer (~35 ms for 256 completions, most of task-complete).
-- Each event looks its producing task up by primary key; the producers' outputs (a few rows per job) are read once.
WITH incoming AS (
    SELECT * FROM unnest(%(task_ids)b::uuid[], %(attempt_ids)b::uuid[], %(outputs)b::int[], %(kinds)b::text[],
                         %(cursors)b::text[], %(partition_keys)b::text[], %(range_starts)b::bigint[],
                         %(range_ends)b::bigint[], %(scope_keys)b::text[], %(payloads)b::text[])
        WITH ORDINALITY
        AS i(task_id, attempt_id, output_index, kind, scope_cursor, partition_key, range_start, range_end,
             scope_key, payload, position)
),
job_outputs AS MATERIALIZED (
    SELECT j.job_id, ds.output_index, dv.dataset_uuid, dv.dataset_version
    FROM jobs j
    JOIN datasets ds ON ds.dag_id = j.dag_id AND ds.job_name = j.job_name
    JOIN dataset_versions dv ON dv.dataset_uuid = ds.dataset_uuid AND dv.job_id = j.job_id
    WHERE j.job_id IN (SELECT job_id FROM tasks WHERE task_id = ANY(%(producer_ids)b::uuid[]))
),
targets AS (
    SELECT i.*, o.org_id, o.dataset_uuid, o.dataset_version
    FROM incoming i
    CROSS JOIN LATERAL (
        SELECT t.org_id, jo.dataset_uuid, jo.dataset_version
        FROM tasks t JOIN job_outputs jo ON jo.job_id = t.job_id AND jo.output_index = i.output_index
        WHERE t.task_id = i.task_id
        OFFSET 0  -- kept a per-event lookup: never flattened into a join of the batch with its producers
    ) o
),
inserted AS (
    INSERT INTO events (org_id, dataset_uuid, dataset_version, kind, scope_cursor, partition_key, range_start,
                        range_end, scope_key, payload, producer_task_id, producer_attempt_id)
    SELECT org_id, dataset_uuid, dataset_version, kind, scope_cursor, partition_key, range_start, range_end,
           scope_key, payload::jsonb, task_id, attempt_id
    FROM targets
    ORDER BY position  -- event ids follow emission order: PerUpdate and PerPartition run in this order
    ON CONFLICT ON CONSTRAINT events_dedup DO NOTHING
    RETURNING event_id, producer_task_id
),
queued AS (
    -- for the router (route_events)
    INSERT INTO unrouted_events (event_id) SELECT event_id FROM inserted
)
-- counted by one grouping of both lists, not by joining them
SELECT task_id, sum(matched) AS matched, sum(inserted) AS inserted
FROM (
    SELECT task_id, 1 AS matched, 0 AS inserted FROM targets
    UNION ALL
    SELECT producer_task_id, 0, 1 FROM inserted
) c
GROUP BY task_id;

-- name: finish_attempts --
-- Close attempts and their tasks in one statement; slots are released, transport entries dropped, and a
-- retried task waits out its backoff (base * 2^(attempt-1), capped, with jitter). Each table is also filtered on
-- its key with `= ANY`: joined only to the unnest (which the planner guesses at 10 rows), a table of a few
-- thousand rows was read in full for a hash join (~1.3 ms for 15 attempts).
WITH incoming AS (
    SELECT * FROM unnest(%(task_ids)b::uuid[], %(attempt_ids)b::uuid[], %(attempt_statuses)b::text[],
                         %(task_statuses)b::text[], %(errors)b::text[])
        AS i(task_id, attempt_id, attempt_status, task_status, error)
),
attempts AS (
    UPDATE task_attempts a SET status = i.attempt_status, error = i.error, finished_at = now()
    FROM incoming i WHERE a.attempt_id = i.attempt_id AND a.attempt_id = ANY(%(attempt_ids)b::uuid[])
),
released AS (DELETE FROM slot_leases WHERE task_id = ANY(%(task_ids)b::uuid[])),
dequeued AS (DELETE FROM transport_queue WHERE task_id = ANY(%(task_ids)b::uuid[]))
UPDATE tasks t
SET status = i.task_status,
    -- a task stopped on request keeps the reason it was asked to stop for (a rollback names the version)
    last_error = CASE WHEN i.task_status = 'Canceled' AND t.cancel_requested_at IS NOT NULL
                      THEN coalesce(t.last_error, i.error) ELSE i.error END,
    updated_at = now(),
    not_before = CASE WHEN i.task_status = 'Queued'
                      THEN now() + make_interval(secs => least(%(max_s)s, %(base_s)s * 2 ^ (t.attempt_count - 1))
                                                         * (0.5 + random() / 2))
                      ELSE t.not_before END,
    dispatched_at = CASE WHEN i.task_status = 'Queued' THEN NULL ELSE t.dispatched_at END,
    finished_at = CASE WHEN i.task_status IN ('Completed', 'Failed', 'Canceled') THEN now() END
FROM incoming i
WHERE t.task_id = i.task_id AND t.task_id = ANY(%(task_ids)b::uuid[])
RETURNING t.task_id, CASE WHEN t.status = 'Queued' THEN t.not_before END AS retry_at;

-- name: task_payloads --
-- Everything a worker needs to run one attempt, for a batch of tasks. What every task of a job and version shares
-- (the job's spec, its outputs) is read once per batch: built per task, the outputs were a third of the statement,
-- and one join of all eight tables took ~5 ms to plan. The job's config and outputs come as JSON text, parsed once
-- per batch in Python too.
WITH picked AS MATERIALIZED (
    SELECT task_id, job_id, dag_id, dag_version_id, org_id, input_event_id, query_id
    FROM tasks WHERE task_id = ANY(%(task_ids)b)
),
job_parts AS MATERIALIZED (
    SELECT k.job_id, k.dag_version_id, d.dag_name, v.version AS dag_version, j.job_name, j.activation, j.operator,
           j.runtime, j.config::text AS config, j.execution_strategy, j.update_strategy, vj.timeout_s,
           (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'index', ds.output_index, 'dataset_uuid', ds.dataset_uuid, 'dataset_version', dv.dataset_version,
                    'dataset_name', ds.dataset_name, 'storage', ds.storage, 'format', ds.format,
                    'write_mode', ds.write_mode, 'unique_key', j.unique_key, 'location', dv.storage_location)
                    ORDER BY ds.output_index), '[]')::text
            FROM dataset_versions dv JOIN datasets ds ON ds.dataset_uuid = dv.dataset_uuid
            WHERE dv.job_id = j.job_id) AS outputs
    FROM (SELECT DISTINCT job_id, dag_id, dag_version_id FROM picked) k
    JOIN jobs j ON j.job_id = k.job_id
    JOIN dags d ON d.dag_id = k.dag_id
    JOIN dag_versions v ON v.dag_version_id = k.dag_version_id
    JOIN dag_version_jobs vj ON vj.dag_version_id = k.dag_version_id AND vj.job_id = k.job_id
)
SELECT t.task_id, t.job_id, t.dag_version_id, t.org_id, p.dag_name, p.dag_version, p.job_name, p.activation,
       p.operator, p.runtime, p.config, p.execution_strategy, p.update_strategy, p.timeout_s, p.outputs,
       e.event_id, e.dataset_uuid AS event_dataset_uuid, e.dataset_version AS event_dataset_version,
       e.kind AS event_kind, e.scope_cursor, e.partition_key, e.range_start, e.range_end, e.payload AS event_payload,
       e.producer_task_id AS event_producer_task_id, e.created_at AS event_created_at,
       sl.slot_id, ws.pool_name, ws.env AS slot_env, ws.secret_env AS slot_secret_env,
       -- a batch query's task: the query and the versions it pinned, where each lives
       CASE WHEN t.query_id IS NOT NULL THEN (
           SELECT jsonb_build_object(
                      'query_id', q.query_id, 'sql', q.sql, 'max_rows', q.max_rows, 'timeout_s', q.timeout_s,
                      'datasets', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                       'dataset_name', ds.dataset_name, 'dataset_uuid', ds.dataset_uuid,
                                       'dataset_version', dv.dataset_version, 'storage', ds.storage,
                                       'location', dv.storage_location, 'registry_schema', ds.schema)
                                       ORDER BY ds.dataset_name), '[]')
                                   FROM query_pins p
                                   JOIN datasets ds ON ds.dataset_uuid = p.dataset_uuid
                                   JOIN dataset_versions dv ON dv.dataset_version = p.dataset_version
                                   WHERE p.query_id = q.query_id))
           FROM queries q WHERE q.query_id = t.query_id
       ) END AS query
FROM picked t
JOIN job_parts p ON p.job_id = t.job_id AND p.dag_version_id = t.dag_version_id
LEFT JOIN events e ON e.event_id = t.input_event_id
LEFT JOIN slot_leases sl ON sl.task_id = t.task_id
LEFT JOIN worker_pool_slots ws ON ws.slot_id = sl.slot_id;
