-- name: skip_commit_flush --
-- Query bookkeeping does not wait for its WAL flush: a crash that loses these rows ends their queries too.
SET LOCAL synchronous_commit = off;

-- name: pin_datasets --
-- One snapshot: every referenced name the caller may read, with the version its DAG's active pointer set
-- names, and (Postgres datasets) the table's columns minus Trace's system columns. The query and its pins
-- are recorded only when every name resolved; a missing and an unreadable name look the same. An interactive
-- query starts Running; a batch query starts Queued and follows its task from then on.
WITH resolved AS (
    SELECT c.dataset_name, c.dataset_uuid, c.dataset_version, c.storage, c.storage_location, c.schema,
           CASE WHEN c.storage = 'postgres' THEN (
               SELECT array_agg(a.attname::text ORDER BY a.attnum)
               FROM pg_attribute a
               WHERE a.attrelid = to_regclass(c.storage_location) AND a.attnum > 0 AND NOT a.attisdropped
                 AND left(a.attname, length(%(system_prefix)s)) <> %(system_prefix)s
           ) END AS table_columns
    FROM current_dataset_versions c
    WHERE c.org_id = %(org_id)s
      AND c.dataset_name = ANY(%(names)s::text[])
      AND dataset_readable(c.dataset_uuid, %(user_id)s, %(is_admin)s)
), query AS (
    INSERT INTO queries (org_id, user_id, sql, mode, status, max_rows, timeout_s, format, started_at)
    SELECT %(org_id)s, %(user_id)s, %(sql)s, %(mode)s, %(status)s, %(max_rows)s, %(timeout_s)s, %(format)s,
           CASE WHEN %(status)s = 'Running' THEN now() END
    WHERE (SELECT count(*) FROM resolved) = cardinality(%(names)s::text[])
    RETURNING query_id
), pins AS (
    INSERT INTO query_pins (query_id, dataset_uuid, dataset_version)
    SELECT q.query_id, r.dataset_uuid, r.dataset_version FROM query q CROSS JOIN resolved r
)
SELECT q.query_id, r.*
FROM query q FULL JOIN resolved r ON true;

-- name: finish_query --
UPDATE queries
SET status = %(status)s, row_count = %(row_count)s, error = %(error)s, finished_at = now()
WHERE query_id = %(query_id)s;

-- name: query_by_id --
-- A query of the caller's org: the caller's own, or any when the caller is an admin; a batch query with its task.
SELECT q.query_id, q.mode, q.status, q.sql, q.max_rows, q.timeout_s, q.format, q.result_location, q.row_count,
       q.truncated, q.result_columns, q.error, q.created_at, q.started_at, q.finished_at, t.task_id,
       t.attempt_count AS attempts,
       coalesce((
           SELECT jsonb_agg(jsonb_build_object(
                      'dataset_name', d.dataset_name, 'dataset_uuid', p.dataset_uuid,
                      'dataset_version', p.dataset_version) ORDER BY d.dataset_name)
           FROM query_pins p JOIN datasets d ON d.dataset_uuid = p.dataset_uuid
           WHERE p.query_id = q.query_id
       ), '[]'::jsonb) AS pins
FROM queries q
LEFT JOIN tasks t ON t.query_id = q.query_id
WHERE q.query_id = %(query_id)s AND q.org_id = %(org_id)s AND (q.user_id = %(user_id)s OR %(is_admin)s);
