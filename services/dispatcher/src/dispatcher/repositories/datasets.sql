-- name: list_readable --
-- Published datasets of the org the caller may read, with the version readers see now.
SELECT c.dataset_name, c.dataset_uuid, c.dag_name, c.job_name, c.output_index, c.storage, c.format, c.write_mode,
       c.dataset_version, ds.published_at, ds.updated_at
FROM current_dataset_versions c JOIN datasets ds ON ds.dataset_uuid = c.dataset_uuid
WHERE c.org_id = %(org_id)s AND c.dataset_name IS NOT NULL
  AND dataset_readable(c.dataset_uuid, %(user_id)s, %(is_admin)s)
ORDER BY c.dataset_name;

-- name: readable_by_name --
SELECT c.dataset_name, c.dataset_uuid, c.dag_id, c.dag_name, c.job_name, c.output_index, c.storage, c.format,
       c.write_mode, c.schema, c.dataset_version, c.storage_location, ds.created_at, ds.published_at,
       ds.updated_at
FROM current_dataset_versions c JOIN datasets ds ON ds.dataset_uuid = c.dataset_uuid
WHERE c.org_id = %(org_id)s AND c.dataset_name = %(dataset_name)s
  AND dataset_readable(c.dataset_uuid, %(user_id)s, %(is_admin)s);

-- name: versions_of --
-- Every version of a dataset, newest first: which DAG versions used it, and whether readers see it now.
SELECT dv.dataset_version, dv.storage_location, dv.created_at, dv.purged_at,
       (dv.dataset_version = %(current)s) AS current,
       coalesce((SELECT array_agg(DISTINCT v.version ORDER BY v.version)
                 FROM dag_version_jobs vj JOIN dag_versions v ON v.dag_version_id = vj.dag_version_id
                 WHERE vj.job_id = dv.job_id), '{}') AS dag_versions
FROM dataset_versions dv
WHERE dv.dataset_uuid = %(dataset_uuid)s
ORDER BY dv.created_at DESC, dv.dataset_version;

-- name: read_roles_of --
SELECT r.name
FROM dataset_read_roles rr JOIN org_roles r ON r.role_id = rr.role_id
WHERE rr.dataset_uuid = %(dataset_uuid)s
ORDER BY r.name;

-- name: roles_by_name --
SELECT role_id, name FROM org_roles WHERE org_id = %(org_id)s AND name = ANY(%(names)s);

-- name: lock_dataset --
SELECT dataset_uuid FROM datasets WHERE dataset_uuid = %(dataset_uuid)s FOR UPDATE;

-- name: clear_read_roles --
DELETE FROM dataset_read_roles WHERE dataset_uuid = %(dataset_uuid)s;

-- name: add_read_roles --
INSERT INTO dataset_read_roles (org_id, dataset_uuid, role_id)
SELECT %(org_id)s, %(dataset_uuid)s, unnest(%(role_ids)s::uuid[]);

-- name: touch_dataset --
UPDATE datasets SET updated_at = now() WHERE dataset_uuid = %(dataset_uuid)s;

-- name: output_target --
-- Output `output` of a task's job: the dataset, the version this job writes, and how.
SELECT ds.dataset_uuid, ds.dataset_name, ds.storage, ds.write_mode, ds.schema, dv.dataset_version,
       dv.storage_location, j.update_strategy, j.unique_key
FROM tasks t
JOIN jobs j ON j.job_id = t.job_id
JOIN dataset_versions dv ON dv.job_id = t.job_id
JOIN datasets ds ON ds.dataset_uuid = dv.dataset_uuid
WHERE t.task_id = %(task_id)s AND ds.output_index = %(output)s;

-- name: input_target --
-- The input event of a task and where its dataset version lives.
SELECT e.org_id, e.dataset_uuid, e.dataset_version, e.scope_cursor, e.partition_key, e.range_start,
       e.range_end, ds.storage, ds.dataset_name, dv.storage_location
FROM tasks t
JOIN events e ON e.event_id = t.input_event_id
JOIN datasets ds ON ds.dataset_uuid = e.dataset_uuid
JOIN dataset_versions dv ON dv.dataset_version = e.dataset_version
WHERE t.task_id = %(task_id)s;

-- name: table_columns --
-- The columns of a dataset table, in order (none when the table does not exist yet).
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
FROM pg_attribute a
WHERE a.attrelid = to_regclass(%(qualified_table)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- name: lock_table_creation --
-- Writers of one dataset version serialize on creating its table.
SELECT pg_advisory_xact_lock(hashtextextended(%(qualified_table)s, 0));

-- name: create_table --
CREATE TABLE IF NOT EXISTS {table} ({columns}, _trace_scope text NOT NULL, _trace_task_id uuid NOT NULL);

-- name: create_scope_index --
CREATE INDEX IF NOT EXISTS {index} ON {table} (_trace_scope);

-- name: create_unique_key --
CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} ({columns});

-- name: record_schema --
-- The registry keeps the schema of the first version written, for readers of versions without data yet.
UPDATE datasets SET schema = %(schema)s, updated_at = now()
WHERE dataset_uuid = %(dataset_uuid)s AND schema IS NULL;

-- name: delete_scope --
DELETE FROM {table} WHERE _trace_scope = %(scope_key)s;

-- name: insert_rows --
-- One statement per call: Postgres converts each JSON value to its column's type (a bad value fails the
-- whole call). `xmax = 0` tells an inserted row from one that replaced a row with the same unique key.
INSERT INTO {table} ({columns}, _trace_scope, _trace_task_id)
SELECT {columns}, %(scope_key)s, %(task_id)s
FROM jsonb_to_recordset(%(rows)s) AS r({column_types})
{conflict}
RETURNING (xmax = 0) AS inserted;

-- name: select_scope --
SELECT {columns} FROM {table} WHERE _trace_scope = %(scope_key)s;
