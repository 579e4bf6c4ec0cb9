-- The deploy lifecycle (SPEC §6): redeploys, a rebuild's backfill and catch-up, cutover, rollback.

-- name: lock_routing --
-- Lifecycle transactions that change which jobs read which events hold this; the router holds it shared for
-- each pass. Taking it waits until every router pass that started under the old subscriptions has committed,
-- so a backfill in the same transaction sees every event those passes routed.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: share_routing_lock --
SELECT pg_advisory_xact_lock_shared(%(key)s);

-- name: dag_state --
-- A DAG with its active and rebuilding versions; `lock` holds the row against concurrent lifecycle changes.
SELECT d.dag_id, d.org_id, d.dag_name, d.active_version_id, d.active_pointer_set_id, d.rebuilding_version_id,
       a.version AS active_version, a.config AS active_config,
       r.version AS rebuilding_version, r.config AS rebuilding_config,
       r.rebuild_target_event_id, r.rebuild_backfilled_event_id, r.rebuild_round, r.rebuild_round_started_at
FROM dags d
JOIN dag_versions a ON a.dag_version_id = d.active_version_id
LEFT JOIN dag_versions r ON r.dag_version_id = d.rebuilding_version_id
WHERE d.org_id = %(org_id)s AND d.dag_name = %(dag_name)s AND NOT d.system;  -- the platform's DAGs are not deployed

-- name: lock_dag_state --
SELECT d.dag_id, d.org_id, d.dag_name, d.active_version_id, d.active_pointer_set_id, d.rebuilding_version_id,
       a.version AS active_version, a.config AS active_config,
       r.version AS rebuilding_version, r.config AS rebuilding_config,
       r.rebuild_target_event_id, r.rebuild_backfilled_event_id, r.rebuild_round, r.rebuild_round_started_at
FROM dags d
JOIN dag_versions a ON a.dag_version_id = d.active_version_id
LEFT JOIN dag_versions r ON r.dag_version_id = d.rebuilding_version_id
WHERE d.dag_id = %(dag_id)s
FOR UPDATE OF d;

-- name: next_version --
SELECT coalesce(max(version), 0) + 1 AS version FROM dag_versions WHERE dag_id = %(dag_id)s;

-- name: version_jobs --
-- The job rows of a version with their inputs (by index) and outputs: what a redeploy may reuse.
SELECT vj.job_name, vj.job_id, vj.rebuilds, j.activation, j.materialization_hash,
       coalesce((SELECT jsonb_agg(jsonb_build_array(ji.dataset_uuid, ji.upstream_job_id) ORDER BY ji.input_index)
                 FROM job_inputs ji WHERE ji.job_id = vj.job_id), '[]') AS inputs,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'index', ds.output_index, 'dataset_uuid', ds.dataset_uuid, 'dataset_version', dv.dataset_version,
                    'storage_location', dv.storage_location) ORDER BY ds.output_index)
                 FROM dataset_versions dv JOIN datasets ds ON ds.dataset_uuid = dv.dataset_uuid
                 WHERE dv.job_id = vj.job_id), '[]') AS outputs
FROM dag_version_jobs vj JOIN jobs j ON j.job_id = vj.job_id
WHERE vj.dag_version_id = %(version_id)s;

-- name: dataset_of_output --
SELECT dataset_uuid, storage, format, write_mode FROM datasets
WHERE dag_id = %(dag_id)s AND job_name = %(job_name)s AND output_index = %(output_index)s;

-- name: insert_version_pointer_set --
-- The pointer set a version serves: the dataset version each of its job rows writes, per output.
WITH pointer_set AS (
    INSERT INTO pointer_sets (pointer_set_id, org_id, dag_id, dag_version_id, replaces_pointer_set_id)
    VALUES (%(pointer_set_id)s, %(org_id)s, %(dag_id)s, %(version_id)s, %(replaces)s)
    RETURNING pointer_set_id
),
entries AS (
    INSERT INTO pointer_set_entries (pointer_set_id, dataset_uuid, dataset_version)
    SELECT p.pointer_set_id, dv.dataset_uuid, dv.dataset_version
    FROM pointer_set p
    CROSS JOIN dag_version_jobs vj
    JOIN dataset_versions dv ON dv.job_id = vj.job_id
    WHERE vj.dag_version_id = %(version_id)s
)
SELECT pointer_set_id FROM pointer_set;

-- name: version_pointer_set --
-- The pointer set a version served with (its newest, should it have had several).
SELECT pointer_set_id, replaces_pointer_set_id FROM pointer_sets
WHERE dag_version_id = %(version_id)s
ORDER BY created_at DESC, pointer_set_id
LIMIT 1;

-- name: start_rebuild --
-- Compare-and-swap: the version becomes the DAG's rebuilding version only if the DAG is still as the deploy
-- saw it (same active pointer set, same rebuilding version or none).
UPDATE dags SET rebuilding_version_id = %(version_id)s, updated_at = now()
WHERE dag_id = %(dag_id)s AND active_pointer_set_id = %(seen_pointer_set_id)s
  AND rebuilding_version_id IS NOT DISTINCT FROM %(seen_rebuilding_id)s::uuid
RETURNING dag_id;

-- name: swap_active --
-- Compare-and-swap on the pointer set being replaced: the version and its pointer set become what readers see,
-- in one statement, only if the DAG still serves `seen_pointer_set_id` with `seen_rebuilding_id` rebuilding.
UPDATE dags SET active_version_id = %(version_id)s, active_pointer_set_id = %(pointer_set_id)s,
                rebuilding_version_id = NULL, updated_at = now()
WHERE dag_id = %(dag_id)s AND active_pointer_set_id = %(seen_pointer_set_id)s
  AND rebuilding_version_id IS NOT DISTINCT FROM %(seen_rebuilding_id)s::uuid
RETURNING dag_id;

-- name: stop_rebuild --
UPDATE dags SET rebuilding_version_id = NULL, updated_at = now()
WHERE dag_id = %(dag_id)s AND rebuilding_version_id = %(version_id)s
RETURNING dag_id;

-- name: set_version_status --
-- A version's lifecycle status; becoming active stamps activated_at, leaving service stamps deactivated_at.
UPDATE dag_versions
SET status = %(status)s,
    activated_at = CASE WHEN %(status)s = 'active' THEN now() ELSE activated_at END,
    deactivated_at = CASE WHEN %(status)s IN ('retired', 'rolled_back', 'abandoned') THEN now() ELSE NULL END,
    rebuild_error = CASE WHEN %(status)s = 'rebuilding' THEN rebuild_error END
WHERE dag_version_id = %(version_id)s;

-- name: begin_rebuild_round --
-- A new catch-up round: events from outside the rebuild up to the newest one now become its tasks.
UPDATE dag_versions
SET rebuild_target_event_id = greatest(coalesce(rebuild_target_event_id, 0),
                                      (SELECT coalesce(max(event_id), 0) FROM events)),
    rebuild_backfilled_event_id = coalesce(rebuild_target_event_id, 0),
    rebuild_round = rebuild_round + 1,
    rebuild_round_started_at = now()
WHERE dag_version_id = %(version_id)s AND status = 'rebuilding' AND rebuild_round = %(seen_round)s
RETURNING rebuild_target_event_id, rebuild_round;

-- name: claim_backfill --
-- The next slice of a round's backfill, claimed by compare-and-swap (nothing when the rebuild ended meanwhile).
UPDATE dag_versions SET rebuild_backfilled_event_id = %(through)s
WHERE dag_version_id = %(version_id)s AND status = 'rebuilding' AND rebuild_backfilled_event_id = %(after)s
RETURNING dag_version_id;

-- name: set_rebuild_error --
UPDATE dag_versions SET rebuild_error = %(error)s WHERE dag_version_id = %(version_id)s;

-- name: rebuilding_versions --
-- Every rebuild in progress, for the leader's catch-up loop.
SELECT d.dag_id, d.org_id, d.dag_name, d.active_version_id, d.active_pointer_set_id, v.dag_version_id,
       v.version, v.config, v.rebuild_target_event_id, v.rebuild_backfilled_event_id, v.rebuild_round,
       v.rebuild_round_started_at, v.rebuild_error,
       (now() - v.rebuild_round_started_at) <= make_interval(secs => %(lag_s)s) AS round_is_recent,
       EXISTS (SELECT 1 FROM dag_version_jobs vj JOIN jobs j ON j.job_id = vj.job_id
               WHERE vj.dag_version_id = v.dag_version_id AND vj.rebuilds AND j.activation = 'source')
           AS rebuilds_sources
FROM dags d JOIN dag_versions v ON v.dag_version_id = d.rebuilding_version_id
ORDER BY v.created_at;

-- name: backfill_tasks --
-- Tasks of `job_ids` (job rows of version `version_id`) for the events with ids in (after, through] of the
-- dataset versions they read, one per (job, event) as the router makes them. With `held_only`, only inputs a
-- rebuild holds back between rounds: those not written by the version's rebuilt reactive jobs, whose events the
-- router brings at once.
WITH wanted AS (
    SELECT j.job_id, j.org_id, j.dag_id, j.runtime, j.execution_strategy, vj.max_attempts, iv.dataset_version
    FROM dag_version_jobs vj
    JOIN jobs j ON j.job_id = vj.job_id
    JOIN job_input_versions iv ON iv.job_id = vj.job_id
    WHERE vj.dag_version_id = %(version_id)s AND vj.job_id = ANY(%(job_ids)s::uuid[])
      AND NOT (%(held_only)s AND EXISTS (
          SELECT 1 FROM dag_version_jobs up JOIN jobs uj ON uj.job_id = up.job_id
          WHERE up.dag_version_id = vj.dag_version_id AND up.job_id = iv.upstream_job_id AND up.rebuilds
            AND uj.activation = 'reactive'))
),
inserted AS (
    INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, input_event_id, runtime, partition_key,
                       max_attempts)
    SELECT w.org_id, w.dag_id, %(version_id)s, w.job_id, e.event_id, w.runtime,
           task_partition_key(w.execution_strategy, e.partition_key, e.range_start, e.range_end), w.max_attempts
    FROM wanted w
    JOIN events e ON e.dataset_version = w.dataset_version
    WHERE e.event_id > %(after)s AND (%(through)s::bigint IS NULL OR e.event_id <= %(through)s)
    ORDER BY e.event_id
    ON CONFLICT (job_id, input_event_id) DO NOTHING
    RETURNING task_id, input_event_id
)
SELECT count(*) AS tasks FROM inserted;

-- name: rebuild_blockers --
-- What keeps a rebuild from its cutover, counted: tasks of its rebuilding jobs that are not Completed (waiting,
-- in flight, failed or canceled), events they will read that the router has not routed yet (those of its rebuilt
-- reactive jobs, and the held ones up to the round's target), and rebuilt sources behind the version they replace.
WITH rjobs AS (
    SELECT vj.job_id, j.runtime, j.activation
    FROM dag_version_jobs vj JOIN jobs j ON j.job_id = vj.job_id
    WHERE vj.dag_version_id = %(version_id)s AND vj.rebuilds
),
reads AS (
    SELECT DISTINCT iv.dataset_version,
           EXISTS (SELECT 1 FROM rjobs u WHERE u.job_id = iv.upstream_job_id AND u.activation = 'reactive') AS own
    FROM rjobs r JOIN job_input_versions iv ON iv.job_id = r.job_id
),
sources AS (
    SELECT r.job_id, run.status AS run_status,
           -- an output behind: the version it replaces has events, and this one has not reached the newest
           EXISTS (
               SELECT 1
               FROM dataset_versions dv
               JOIN pointer_set_entries pe ON pe.pointer_set_id = %(active_pointer_set_id)s
                   AND pe.dataset_uuid = dv.dataset_uuid
               CROSS JOIN LATERAL (
                   SELECT scope_position(e.scope_cursor, e.range_end) AS position FROM events e
                   WHERE e.dataset_version = pe.dataset_version ORDER BY e.event_id DESC LIMIT 1
               ) old_head
               LEFT JOIN LATERAL (
                   SELECT scope_position(e.scope_cursor, e.range_end) AS position FROM events e
                   WHERE e.dataset_version = dv.dataset_version ORDER BY e.event_id DESC LIMIT 1
               ) new_head ON true
               WHERE dv.job_id = r.job_id
                 AND (old_head.position IS NULL OR new_head.position IS NULL OR new_head.position < old_head.position)
           ) AS behind
    FROM rjobs r
    LEFT JOIN LATERAL (
        SELECT t.status FROM tasks t WHERE t.job_id = r.job_id AND t.input_event_id IS NULL
        ORDER BY t.created_at DESC LIMIT 1
    ) run ON true
    WHERE r.activation = 'source'
)
SELECT
    (SELECT count(*) FROM rjobs r JOIN tasks t ON t.job_id = r.job_id
     WHERE t.status = 'Queued' AND t.input_event_id IS NOT NULL) AS waiting,
    (SELECT count(*) FROM rjobs r JOIN tasks t ON t.runtime = r.runtime AND t.job_id = r.job_id
     WHERE t.status IN ('Dispatched', 'Running') AND t.input_event_id IS NOT NULL) AS in_flight,
    (SELECT count(*) FROM rjobs r JOIN tasks t ON t.job_id = r.job_id
     WHERE t.status IN ('Failed', 'Canceled') AND t.input_event_id IS NOT NULL) AS failed,
    (SELECT count(*) FROM unrouted_events u JOIN events e ON e.event_id = u.event_id
     WHERE (e.dataset_version IN (SELECT dataset_version FROM reads WHERE own)
            OR (e.dataset_version IN (SELECT dataset_version FROM reads WHERE NOT own)
                AND e.event_id <= %(target)s))) AS unrouted,
    (SELECT count(*) FROM sources s
     WHERE s.run_status IS DISTINCT FROM 'Completed' AND (s.run_status IS DISTINCT FROM 'Running' OR s.behind))
        AS sources_behind;

-- name: events_after_target --
-- Whether held events (see backfill_tasks) arrived after the round's target: work the next round would take.
SELECT EXISTS (
    SELECT 1
    FROM dag_version_jobs vj
    JOIN job_input_versions iv ON iv.job_id = vj.job_id
    JOIN events e ON e.dataset_version = iv.dataset_version AND e.event_id > %(target)s
    WHERE vj.dag_version_id = %(version_id)s AND vj.rebuilds
      AND NOT EXISTS (SELECT 1 FROM dag_version_jobs up JOIN jobs uj ON uj.job_id = up.job_id
                      WHERE up.dag_version_id = vj.dag_version_id AND up.job_id = iv.upstream_job_id AND up.rebuilds
                        AND uj.activation = 'reactive')
) AS waiting;

-- name: end_live_tasks --
-- Tasks of jobs leaving service: waiting and dispatched ones are Canceled at once (slots released, transport
-- entries dropped); running ones are asked to stop, which their next heartbeat or task-fetch answers.
-- `sources_only` limits this to source runs. Locked in task order, like every batch that locks tasks.
WITH live AS (
    SELECT t.task_id, t.status FROM tasks t
    WHERE t.job_id = ANY(%(job_ids)s::uuid[]) AND t.status IN ('Queued', 'Dispatched', 'Running')
      AND (NOT %(sources_only)s OR t.input_event_id IS NULL)
    ORDER BY t.task_id
    FOR UPDATE
),
released AS (DELETE FROM slot_leases WHERE task_id IN (SELECT task_id FROM live WHERE status <> 'Running')),
dequeued AS (DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM live WHERE status <> 'Running')),
ended AS (
    UPDATE tasks t
    SET status = CASE WHEN l.status = 'Running' THEN 'Running' ELSE 'Canceled' END,
        finished_at = CASE WHEN l.status = 'Running' THEN NULL ELSE now() END,
        cancel_requested_at = coalesce(t.cancel_requested_at, now()),
        last_error = %(reason)s,
        updated_at = now()
    FROM live l WHERE t.task_id = l.task_id
    RETURNING l.status
)
SELECT count(*) FILTER (WHERE status <> 'Running') AS canceled,
       count(*) FILTER (WHERE status = 'Running') AS stopping
FROM ended;

-- name: retag_live_tasks --
-- Live tasks of jobs a version keeps run under that version's settings (timeout, the scheduler's limits).
UPDATE tasks SET dag_version_id = %(version_id)s, updated_at = now()
WHERE job_id = ANY(%(job_ids)s::uuid[]) AND status IN ('Queued', 'Dispatched', 'Running')
  AND dag_version_id <> %(version_id)s;

-- name: copy_operator_state --
INSERT INTO operator_state (org_id, job_id, state)
SELECT org_id, %(to_job_id)s, state FROM operator_state WHERE job_id = %(from_job_id)s
ON CONFLICT DO NOTHING;

-- name: take_over_tasks --
-- ?rematerialize=none: the job row `to_job_id` continues `from_job_id`, and takes over the events that one had
-- not finished (its live tasks) or not received yet (unrouted events of what it reads).
WITH pending AS (
    SELECT t.input_event_id AS event_id FROM tasks t
    WHERE t.job_id = %(from_job_id)s AND t.input_event_id IS NOT NULL
      AND t.status IN ('Queued', 'Dispatched', 'Running')
    UNION
    SELECT e.event_id FROM unrouted_events u JOIN events e ON e.event_id = u.event_id
    WHERE e.dataset_version IN (SELECT dataset_version FROM job_input_versions WHERE job_id = %(from_job_id)s)
),
inserted AS (
    INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, input_event_id, runtime, partition_key,
                       max_attempts)
    SELECT j.org_id, j.dag_id, %(version_id)s, j.job_id, e.event_id, j.runtime,
           task_partition_key(j.execution_strategy, e.partition_key, e.range_start, e.range_end), vj.max_attempts
    FROM pending p
    JOIN events e ON e.event_id = p.event_id
    JOIN jobs j ON j.job_id = %(to_job_id)s
    JOIN dag_version_jobs vj ON vj.dag_version_id = %(version_id)s AND vj.job_id = j.job_id
    ORDER BY e.event_id
    ON CONFLICT (job_id, input_event_id) DO NOTHING
    RETURNING task_id, input_event_id
)
SELECT count(*) AS tasks FROM inserted;

-- name: source_run_to_restore --
-- The newest run of a source job a rollback brings back: restarted unless it is live or ended Completed.
SELECT task_id, status FROM tasks
WHERE job_id = %(job_id)s AND input_event_id IS NULL
ORDER BY created_at DESC LIMIT 1
FOR UPDATE;

-- name: unpublish_other_datasets --
-- Names of this DAG's datasets that the version being activated does not publish are released first, so a name
-- can move from one output to another in the same transaction.
UPDATE datasets SET dataset_name = NULL, published_at = NULL, updated_at = now()
WHERE dag_id = %(dag_id)s AND dataset_name IS NOT NULL
  AND (dataset_uuid, dataset_name) NOT IN (
      SELECT u, n FROM unnest(%(dataset_uuids)s::uuid[], %(names)s::text[]) AS p(u, n));

-- name: publish_datasets --
UPDATE datasets SET dataset_name = p.n, published_at = now(), updated_at = now()
FROM unnest(%(dataset_uuids)s::uuid[], %(names)s::text[]) AS p(u, n)
WHERE datasets.dataset_uuid = p.u AND datasets.dataset_name IS DISTINCT FROM p.n;

-- name: upsert_slots --
-- A pool's slots as a version defines them; a slot index that comes back is revived with the new definition.
INSERT INTO worker_pool_slots (org_id, dag_id, pool_name, slot_index, env, secret_env)
SELECT %(org_id)s, %(dag_id)s, %(pool_name)s, s.slot_index - 1, s.env, s.secret_env
FROM unnest(%(envs)s::jsonb[], %(secret_envs)s::jsonb[]) WITH ORDINALITY AS s(env, secret_env, slot_index)
ON CONFLICT (dag_id, pool_name, slot_index) DO UPDATE
SET env = excluded.env, secret_env = excluded.secret_env, retired_at = NULL, updated_at = now()
WHERE (worker_pool_slots.env, worker_pool_slots.secret_env, worker_pool_slots.retired_at)
      IS DISTINCT FROM (excluded.env, excluded.secret_env, NULL);

-- name: retire_slots --
-- Slots no serving version defines any more: pools left out of `pool_names` (with their sizes) and slot
-- indexes past a pool's size. A leased slot keeps its lease until its task ends.
UPDATE worker_pool_slots s SET retired_at = now(), updated_at = now()
WHERE s.dag_id = %(dag_id)s AND s.retired_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM unnest(%(pool_names)s::text[], %(sizes)s::int[]) AS p(name, size)
      WHERE p.name = s.pool_name AND s.slot_index < p.size);

-- name: version_history --
SELECT v.version, v.dag_version_id, v.status, v.rematerialize, v.created_at, v.activated_at, v.deactivated_at,
       u.name AS deployed_by, pv.version AS parent_version, v.changes, v.rebuild_error
FROM dag_versions v
LEFT JOIN users u ON u.user_id = v.deployed_by
LEFT JOIN dag_versions pv ON pv.dag_version_id = v.parent_version_id
WHERE v.dag_id = %(dag_id)s
ORDER BY v.version DESC;

-- name: version_by_number --
SELECT dag_version_id, version, status, config FROM dag_versions
WHERE dag_id = %(dag_id)s AND version = %(version)s;

-- name: previous_version --
-- The version that served before the active one: the retired version that left service last.
SELECT dag_version_id, version, status, config FROM dag_versions
WHERE dag_id = %(dag_id)s AND status = 'retired'
ORDER BY deactivated_at DESC, version DESC
LIMIT 1;

-- name: rebuild_progress --
-- Per job of a rebuild: its tasks by status, and per input how far its completed tasks got against the input's
-- head (positions of range ends or numeric cursors); a rebuilt source: its run and its outputs' heads against
-- the heads of the versions they replace.
SELECT vj.job_name, vj.job_id, j.activation,
       coalesce((SELECT jsonb_object_agg(s.status, s.n) FROM (
                    SELECT t.status, count(*) AS n FROM tasks t
                    WHERE t.job_id = vj.job_id AND t.input_event_id IS NOT NULL GROUP BY t.status) s), '{}')
           AS tasks,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'input', iv.input_index, 'dataset_uuid', iv.dataset_uuid, 'dataset_version', iv.dataset_version,
                    'held', up.job_id IS NULL,
                    'processed', (SELECT scope_position(e.scope_cursor, e.range_end)
                                  FROM tasks t JOIN events e ON e.event_id = t.input_event_id
                                  WHERE t.job_id = vj.job_id AND t.status = 'Completed'
                                    AND e.dataset_version = iv.dataset_version
                                  ORDER BY t.input_event_id DESC LIMIT 1),
                    'head', (SELECT scope_position(e.scope_cursor, e.range_end) FROM events e
                             WHERE e.dataset_version = iv.dataset_version ORDER BY e.event_id DESC LIMIT 1),
                    'waiting_events', CASE WHEN up.job_id IS NULL THEN (
                        SELECT count(*) FROM events e
                        WHERE e.dataset_version = iv.dataset_version AND e.event_id > %(target)s) END)
                    ORDER BY iv.input_index)
                 FROM job_input_versions iv
                 LEFT JOIN (dag_version_jobs up JOIN jobs uj ON uj.job_id = up.job_id AND uj.activation = 'reactive')
                     ON up.dag_version_id = vj.dag_version_id AND up.job_id = iv.upstream_job_id AND up.rebuilds
                 WHERE iv.job_id = vj.job_id), '[]') AS inputs,
       (SELECT t.status FROM tasks t WHERE t.job_id = vj.job_id AND t.input_event_id IS NULL
        ORDER BY t.created_at DESC LIMIT 1) AS run_status,
       CASE WHEN j.activation = 'source' THEN coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'output', ds.output_index,
                      'head', (SELECT scope_position(e.scope_cursor, e.range_end) FROM events e
                               WHERE e.dataset_version = dv.dataset_version ORDER BY e.event_id DESC LIMIT 1),
                      'replaced_head', (SELECT scope_position(e.scope_cursor, e.range_end) FROM events e
                                        WHERE e.dataset_version = pe.dataset_version
                                        ORDER BY e.event_id DESC LIMIT 1))
                      ORDER BY ds.output_index)
           FROM dataset_versions dv
           JOIN datasets ds ON ds.dataset_uuid = dv.dataset_uuid
           LEFT JOIN pointer_set_entries pe ON pe.pointer_set_id = %(active_pointer_set_id)s
               AND pe.dataset_uuid = dv.dataset_uuid
           WHERE dv.job_id = vj.job_id), '[]') END AS outputs
FROM dag_version_jobs vj JOIN jobs j ON j.job_id = vj.job_id
WHERE vj.dag_version_id = %(version_id)s AND vj.rebuilds
ORDER BY vj.job_name;

-- name: unpublished_but_read --
-- A dataset this DAG publishes now, left out of `kept`, that a serving job of another DAG reads.
SELECT ds.dataset_name, d.dag_name AS reader_dag, vj.job_name AS reader_job
FROM datasets ds
JOIN job_inputs ji ON ji.dataset_uuid = ds.dataset_uuid AND ji.upstream_job_id IS NULL
JOIN jobs j ON j.job_id = ji.job_id
JOIN dags d ON d.dag_id = j.dag_id AND d.dag_id <> ds.dag_id
JOIN dag_version_jobs vj ON vj.job_id = j.job_id
    AND vj.dag_version_id IN (d.active_version_id, d.rebuilding_version_id)
WHERE ds.dag_id = %(dag_id)s AND ds.dataset_name IS NOT NULL AND ds.dataset_uuid <> ALL(%(kept)s::uuid[])
ORDER BY ds.dataset_name, d.dag_name, vj.job_name
LIMIT 1;
