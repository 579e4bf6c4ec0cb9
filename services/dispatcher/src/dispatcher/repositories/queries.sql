-- name: create_query_dag --
-- An org's system DAG of batch queries, made by its first batch query: one active version (no YAML) with one
-- reactive job, `duckdb_query`, whose tasks come from query submissions instead of events. Concurrent first
-- queries of an org create it once: the second insert waits for the first, then does nothing.
WITH ids AS (
    SELECT gen_random_uuid() AS dag_id, gen_random_uuid() AS version_id
), dag AS (
    INSERT INTO dags (dag_id, org_id, dag_name, system, active_version_id)
    SELECT dag_id, %(org_id)s, %(dag_name)s, true, version_id FROM ids
    ON CONFLICT (org_id, dag_name) DO NOTHING
    RETURNING dag_id, active_version_id
), version AS (
    INSERT INTO dag_versions (dag_version_id, org_id, dag_id, version, status, source_yaml, config, config_hash,
                              activated_at)
    SELECT active_version_id, %(org_id)s, dag_id, 1, 'active', '', %(config)s, %(config_hash)s, now() FROM dag
    RETURNING dag_version_id, dag_id
), job AS (
    INSERT INTO jobs (org_id, dag_id, job_name, activation, runtime, operator, execution_strategy, update_strategy,
                      materialization_hash, created_in_version_id)
    SELECT %(org_id)s, dag_id, %(job_name)s, 'reactive', %(runtime)s, %(operator)s, 'PerUpdate', 'replace',
           %(config_hash)s, dag_version_id
    FROM version
    RETURNING job_id, dag_id, created_in_version_id
)
INSERT INTO dag_version_jobs (dag_version_id, dag_id, job_name, job_id, max_concurrency, timeout_s, max_attempts)
SELECT created_in_version_id, dag_id, %(job_name)s, job_id, %(max_concurrency)s, %(timeout_s)s, %(max_attempts)s
FROM job;

-- name: query_job --
-- The batch-query job of an org's system DAG, with the settings its tasks run under.
SELECT j.job_id, j.runtime, d.dag_id, d.active_version_id AS dag_version_id, vj.max_concurrency, vj.timeout_s,
       vj.max_attempts
FROM dags d
JOIN dag_version_jobs vj ON vj.dag_version_id = d.active_version_id AND vj.job_name = %(job_name)s
JOIN jobs j ON j.job_id = vj.job_id
WHERE d.org_id = %(org_id)s AND d.dag_name = %(dag_name)s AND d.system;

-- name: set_query_job_settings --
-- The settings of this dispatcher's configuration, when they changed since the DAG was made.
UPDATE dag_version_jobs
SET max_concurrency = %(max_concurrency)s, timeout_s = %(timeout_s)s, max_attempts = %(max_attempts)s
WHERE dag_version_id = %(dag_version_id)s AND job_id = %(job_id)s;

-- name: insert_query_task --
INSERT INTO tasks (org_id, dag_id, dag_version_id, job_id, runtime, max_attempts, query_id)
VALUES (%(org_id)s, %(dag_id)s, %(dag_version_id)s, %(job_id)s, %(runtime)s, %(max_attempts)s, %(query_id)s)
RETURNING task_id;

-- name: task_of_query --
SELECT task_id FROM tasks WHERE query_id = %(query_id)s;

-- name: pinned_input --
-- A dataset the query of this task pinned, and where the pinned version lives.
SELECT ds.storage, dv.dataset_version, dv.storage_location
FROM tasks t
JOIN query_pins p ON p.query_id = t.query_id AND p.dataset_uuid = %(dataset_uuid)s
JOIN datasets ds ON ds.dataset_uuid = p.dataset_uuid
JOIN dataset_versions dv ON dv.dataset_version = p.dataset_version
WHERE t.task_id = %(task_id)s;

-- name: record_result --
-- The attempt's result, recorded before its task completes; completing the task makes the query Completed.
UPDATE queries q
SET result_location = %(location)s, row_count = %(row_count)s, truncated = %(truncated)s,
    result_columns = %(columns)s
FROM tasks t
WHERE t.task_id = %(task_id)s AND q.query_id = t.query_id
RETURNING q.query_id;

-- name: copy_rows --
-- A pinned Postgres dataset's rows as CSV (NULL unquoted-empty, an empty string quoted), one statement: one
-- snapshot of the table.
COPY (SELECT {columns} FROM {table}) TO STDOUT (FORMAT csv);
