-- name: dag_by_name --
SELECT d.dag_id, d.dag_name, d.active_version_id, d.active_pointer_set_id, d.rebuilding_version_id,
       d.created_at, d.updated_at, v.version AS active_version, v.deployed_by, v.activated_at,
       r.version AS rebuilding_version, r.created_at AS rebuild_started_at, r.rebuild_target_event_id,
       r.rebuild_backfilled_event_id, r.rebuild_round, r.rebuild_round_started_at, r.rebuild_error
FROM dags d
LEFT JOIN dag_versions v ON v.dag_version_id = d.active_version_id
LEFT JOIN dag_versions r ON r.dag_version_id = d.rebuilding_version_id
WHERE d.org_id = %(org_id)s AND d.dag_name = %(dag_name)s AND NOT d.system;

-- name: list_dags --
SELECT d.dag_id, d.dag_name, v.version AS active_version, r.version AS rebuilding_version,
       v.created_at AS deployed_at, d.created_at,
       (SELECT count(*) FROM dag_version_jobs vj WHERE vj.dag_version_id = d.active_version_id) AS jobs
FROM dags d
LEFT JOIN dag_versions v ON v.dag_version_id = d.active_version_id
LEFT JOIN dag_versions r ON r.dag_version_id = d.rebuilding_version_id
WHERE d.org_id = %(org_id)s AND NOT d.system  -- system DAGs (`_queries`) are the platform's, not deployed
ORDER BY d.dag_name;

-- name: dataset_names_taken --
SELECT ds.dataset_name, d.dag_name
FROM datasets ds JOIN dags d ON d.dag_id = ds.dag_id
WHERE ds.org_id = %(org_id)s AND ds.dataset_name = ANY(%(names)s) AND ds.dag_id IS DISTINCT FROM %(dag_id)s;

-- name: insert_dag --
INSERT INTO dags (org_id, dag_name) VALUES (%(org_id)s, %(dag_name)s)
ON CONFLICT (org_id, dag_name) DO NOTHING
RETURNING dag_id;

-- name: insert_dag_version --
INSERT INTO dag_versions (dag_version_id, org_id, dag_id, version, status, source_yaml, config, config_hash,
                          rematerialize, parent_version_id, changes, deployed_by, activated_at)
VALUES (%(dag_version_id)s, %(org_id)s, %(dag_id)s, %(version)s, %(status)s, %(source_yaml)s, %(config)s,
        %(config_hash)s, %(rematerialize)s, %(parent_version_id)s, %(changes)s, %(deployed_by)s,
        CASE WHEN %(status)s = 'active' THEN now() END);

-- name: insert_job --
INSERT INTO jobs (org_id, dag_id, job_name, activation, runtime, operator, config, execution_strategy,
                  update_strategy, unique_key, materialization_hash, created_in_version_id)
VALUES (%(org_id)s, %(dag_id)s, %(job_name)s, %(activation)s, %(runtime)s, %(operator)s, %(config)s,
        %(execution_strategy)s, %(update_strategy)s, %(unique_key)s, %(materialization_hash)s, %(version_id)s)
RETURNING job_id;

-- name: insert_dag_version_job --
INSERT INTO dag_version_jobs (dag_version_id, dag_id, job_name, job_id, rebuilds, worker_pool, max_concurrency,
                              timeout_s, max_attempts)
VALUES (%(version_id)s, %(dag_id)s, %(job_name)s, %(job_id)s, %(rebuilds)s, %(worker_pool)s,
        %(max_concurrency)s, %(timeout_s)s, %(max_attempts)s);

-- name: insert_dataset --
INSERT INTO datasets (org_id, dag_id, job_name, output_index, storage, format, write_mode)
VALUES (%(org_id)s, %(dag_id)s, %(job_name)s, %(output_index)s, %(storage)s, %(format)s, %(write_mode)s)
RETURNING dataset_uuid;

-- name: insert_dataset_version --
INSERT INTO dataset_versions (dataset_version, org_id, dataset_uuid, job_id, storage_location, continues_version)
VALUES (%(dataset_version)s, %(org_id)s, %(dataset_uuid)s, %(job_id)s, %(storage_location)s,
        %(continues_version)s);

-- name: insert_job_input --
INSERT INTO job_inputs (job_id, input_index, dataset_uuid, upstream_job_id)
VALUES (%(job_id)s, %(input_index)s, %(dataset_uuid)s, %(upstream_job_id)s);

-- name: activate_dag --
UPDATE dags SET active_version_id = %(version_id)s, active_pointer_set_id = %(pointer_set_id)s, updated_at = now()
WHERE dag_id = %(dag_id)s;

-- name: dag_jobs --
SELECT vj.job_name, j.job_id, j.activation, j.operator, j.runtime, j.execution_strategy, j.update_strategy,
       vj.worker_pool, vj.max_concurrency, vj.timeout_s, vj.max_attempts,
       (SELECT jsonb_object_agg(s.status, s.n) FROM (
            SELECT t.status, count(*) AS n FROM tasks t WHERE t.job_id = j.job_id GROUP BY t.status) s
       ) AS tasks
FROM dag_version_jobs vj JOIN jobs j ON j.job_id = vj.job_id
WHERE vj.dag_version_id = %(version_id)s
ORDER BY vj.job_name;

-- name: dag_datasets --
SELECT ds.job_name, ds.output_index, ds.dataset_uuid, ds.dataset_name, ds.storage, ds.format, ds.write_mode,
       pe.dataset_version,
       -- how far the output got: its newest event (one index probe per output)
       (SELECT jsonb_build_object('kind', e.kind, 'cursor', e.scope_cursor, 'partition_key', e.partition_key,
                                  'range_start', e.range_start, 'range_end', e.range_end, 'payload', e.payload,
                                  'created_at', e.created_at)
        FROM events e WHERE e.dataset_version = pe.dataset_version ORDER BY e.event_id DESC LIMIT 1) AS last_event
FROM datasets ds
LEFT JOIN pointer_set_entries pe ON pe.dataset_uuid = ds.dataset_uuid AND pe.pointer_set_id = %(pointer_set_id)s
WHERE ds.dag_id = %(dag_id)s
ORDER BY ds.job_name, ds.output_index;
