-- The data plane (SPEC §5): one read rule, and the versions readers see now.

-- Who may read a dataset: org admins, the deployers of its producing DAG, holders of one of its read_roles.
-- The Query Service's catalog, the dataset API and deploy's cross-DAG inputs all ask this one function.
CREATE FUNCTION dataset_readable(p_dataset_uuid uuid, p_user_id uuid, p_is_admin boolean) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT p_is_admin
        OR EXISTS (
            SELECT 1 FROM datasets ds JOIN dag_versions v ON v.dag_id = ds.dag_id
            WHERE ds.dataset_uuid = p_dataset_uuid AND v.deployed_by = p_user_id
        )
        OR EXISTS (
            SELECT 1 FROM dataset_read_roles rr JOIN org_role_memberships m ON m.role_id = rr.role_id
            WHERE rr.dataset_uuid = p_dataset_uuid AND m.user_id = p_user_id
        )
$$;

-- Every dataset with the version its DAG's active pointer set names: what a reader sees now. A query pins
-- these rows once, at its start.
CREATE VIEW current_dataset_versions AS
SELECT ds.dataset_uuid, ds.org_id, ds.dataset_name, ds.dag_id, d.dag_name, ds.job_name, ds.output_index,
       ds.storage, ds.format, ds.write_mode, ds.schema, e.dataset_version, dv.storage_location,
       d.active_pointer_set_id AS pointer_set_id
FROM datasets ds
JOIN dags d ON d.dag_id = ds.dag_id
JOIN pointer_set_entries e ON e.pointer_set_id = d.active_pointer_set_id AND e.dataset_uuid = ds.dataset_uuid
JOIN dataset_versions dv ON dv.dataset_version = e.dataset_version;
