-- The declared schema of Trace: what the numbered migrations in migrations/ must add up to.
-- tests/core/test_migrations.py builds one database from this file and one from the migrations and fails
-- when they differ. Change both together: a new migration file and the matching edit here.
--
-- Foreign keys inside one org's tree that do not cascade are DEFERRABLE INITIALLY DEFERRED: deleting an
-- org or a DAG cascades through many tables in an order Postgres chooses, so they are checked at commit.

-- Physical tables of Postgres datasets (trace_core.naming.dataset_table_name), apart from ours.
CREATE SCHEMA trace_data;

-- Tenants. Every row users own carries org_id.
CREATE TABLE orgs (
    org_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- People and robots that call the public API; what they may do comes only from org_role_memberships.
CREATE TABLE users (
    user_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$'),
    email text,
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz,
    UNIQUE (org_id, name),
    UNIQUE (org_id, user_id)
);

-- Bearer tokens for the public API, stored only as a SHA-256 of the secret part.
CREATE TABLE api_tokens (
    token_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    display_prefix text NOT NULL,
    label text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, user_id) ON DELETE CASCADE,
    CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- The one role system: system roles admin/writer/reader (made with the org) and org-defined roles.
CREATE TABLE org_roles (
    role_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
    is_system boolean NOT NULL DEFAULT false,
    description text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name),
    UNIQUE (org_id, role_id),
    -- the system names are reserved: an org-defined role cannot take them, a system role has no other name
    CHECK (is_system = (name IN ('admin', 'writer', 'reader')))
);

-- Who holds which role; both sides must belong to the same org.
CREATE TABLE org_role_memberships (
    org_id uuid NOT NULL,
    role_id uuid NOT NULL,
    user_id uuid NOT NULL,
    granted_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_id, user_id),
    FOREIGN KEY (org_id, role_id) REFERENCES org_roles (org_id, role_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, granted_by) REFERENCES users (org_id, user_id) ON DELETE SET NULL (granted_by)
);
CREATE INDEX org_role_memberships_user ON org_role_memberships (user_id);

-- A DAG and the pointers readers follow: its active version, active pointer set and a rebuild in flight.
-- System DAGs (`_queries`: an org's batch queries) belong to the platform; their names start with `_`, which a
-- user DAG's name cannot.
CREATE TABLE dags (
    dag_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs ON DELETE CASCADE,
    dag_name text NOT NULL,
    system boolean NOT NULL DEFAULT false,
    active_version_id uuid,
    active_pointer_set_id uuid,
    rebuilding_version_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, dag_name),
    UNIQUE (org_id, dag_id),
    CHECK (rebuilding_version_id <> active_version_id),
    CONSTRAINT dags_dag_name_check CHECK (
        CASE WHEN system THEN dag_name ~ '^_[a-z][a-z0-9_]{0,62}$' ELSE dag_name ~ '^[a-z][a-z0-9_]{0,63}$' END
    )
);

-- Immutable deploys: the YAML as sent and its validated form. Status is the version's lifecycle; which
-- version serves is dags.active_version_id.
CREATE TABLE dag_versions (
    dag_version_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dag_id uuid NOT NULL,
    version integer NOT NULL CHECK (version >= 1),
    status text NOT NULL
        CHECK (status IN ('rebuilding', 'active', 'retired', 'rolled_back', 'abandoned')),
    source_yaml text NOT NULL,
    config jsonb NOT NULL,
    config_hash bytea NOT NULL CHECK (length(config_hash) = 32),
    rematerialize boolean NOT NULL DEFAULT true,
    parent_version_id uuid REFERENCES dag_versions ON DELETE SET NULL,
    deployed_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    deactivated_at timestamptz,
    -- the deploy's diff against the version it replaced (changed, added, removed and rebuilt jobs)
    changes jsonb NOT NULL DEFAULT '{}',
    -- a rebuild catches up in rounds: events from outside the rebuild with ids up to the target become its
    -- tasks (backfilled says how far that went); newer ones wait for the next round or the cutover
    rebuild_target_event_id bigint,
    rebuild_backfilled_event_id bigint,
    rebuild_round integer NOT NULL DEFAULT 0 CHECK (rebuild_round >= 0),
    rebuild_round_started_at timestamptz,
    rebuild_error text,  -- why a caught-up rebuild could not cut over
    UNIQUE (dag_id, version),
    UNIQUE (dag_id, dag_version_id),
    FOREIGN KEY (org_id, dag_id) REFERENCES dags (org_id, dag_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, deployed_by) REFERENCES users (org_id, user_id) ON DELETE SET NULL (deployed_by),
    CONSTRAINT dag_versions_rebuild_backfill_within_target
        CHECK (rebuild_backfilled_event_id <= rebuild_target_event_id)
);
CREATE UNIQUE INDEX dag_versions_one_active ON dag_versions (dag_id) WHERE status = 'active';
CREATE UNIQUE INDEX dag_versions_one_rebuilding ON dag_versions (dag_id) WHERE status = 'rebuilding';

ALTER TABLE dags
    ADD CONSTRAINT dags_active_version_fk FOREIGN KEY (dag_id, active_version_id)
        REFERENCES dag_versions (dag_id, dag_version_id) DEFERRABLE INITIALLY DEFERRED,
    ADD CONSTRAINT dags_rebuilding_version_fk FOREIGN KEY (dag_id, rebuilding_version_id)
        REFERENCES dag_versions (dag_id, dag_version_id) DEFERRABLE INITIALLY DEFERRED;

-- A materialization of a job: its materialization-affecting fields. Unchanged jobs keep their row (and so
-- their datasets' versions and operator state) across deploys; a rematerialized job gets a new row.
CREATE TABLE jobs (
    job_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dag_id uuid NOT NULL,
    job_name text NOT NULL CHECK (job_name ~ '^[a-z][a-z0-9_]{0,63}$'),
    activation text NOT NULL CHECK (activation IN ('source', 'reactive')),
    -- `dispatcher`: an operator the dispatcher runs itself, no worker (range_aggregator, range_splitter)
    runtime text NOT NULL CHECK (runtime IN ('ecs_python', 'lambda_py', 'dispatcher')),
    operator text NOT NULL CHECK (length(operator) BETWEEN 1 AND 128),
    config jsonb NOT NULL DEFAULT '{}',
    execution_strategy text NOT NULL CHECK (execution_strategy IN ('PerUpdate', 'PerPartition')),
    update_strategy text NOT NULL CHECK (update_strategy IN ('replace', 'append')),
    unique_key text[] NOT NULL DEFAULT '{}',
    materialization_hash bytea NOT NULL CHECK (length(materialization_hash) = 32),
    created_in_version_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, job_id),
    UNIQUE (dag_id, job_id),
    FOREIGN KEY (org_id, dag_id) REFERENCES dags (org_id, dag_id) ON DELETE CASCADE,
    FOREIGN KEY (dag_id, created_in_version_id) REFERENCES dag_versions (dag_id, dag_version_id)
        DEFERRABLE INITIALLY DEFERRED,
    CHECK (update_strategy <> 'append' OR cardinality(unique_key) > 0),
    CONSTRAINT jobs_dispatcher_operators
        CHECK ((runtime = 'dispatcher') = (operator IN ('range_aggregator', 'range_splitter')))
);
CREATE INDEX jobs_dag_name ON jobs (dag_id, job_name);

-- Which job materializations make up a dag version, with that version's execution-only settings.
CREATE TABLE dag_version_jobs (
    dag_version_id uuid NOT NULL,
    dag_id uuid NOT NULL,
    job_name text NOT NULL,
    job_id uuid NOT NULL,
    rebuilds boolean NOT NULL DEFAULT false,
    worker_pool text,
    max_concurrency integer NOT NULL DEFAULT 1 CHECK (max_concurrency >= 1),
    timeout_s integer NOT NULL CHECK (timeout_s >= 1),
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    PRIMARY KEY (dag_version_id, job_name),
    UNIQUE (dag_version_id, job_id),
    FOREIGN KEY (dag_id, dag_version_id) REFERENCES dag_versions (dag_id, dag_version_id) ON DELETE CASCADE,
    FOREIGN KEY (dag_id, job_id) REFERENCES jobs (dag_id, job_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX dag_version_jobs_job ON dag_version_jobs (job_id);

-- The registry: one row per job output. dataset_name is set only while the output is published, and is
-- unique per org, which is the single-producer rule.
CREATE TABLE datasets (
    dataset_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dataset_name text CHECK (dataset_name ~ '^[a-z][a-z0-9_]{0,127}$'),
    dag_id uuid NOT NULL,
    job_name text NOT NULL,
    output_index integer NOT NULL CHECK (output_index >= 0),
    storage text NOT NULL CHECK (storage IN ('postgres', 's3', 'none')),
    format text CHECK (format IN ('parquet')),
    write_mode text CHECK (write_mode IN ('buffered', 'direct')),
    schema jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    UNIQUE (org_id, dataset_name),
    UNIQUE (org_id, dataset_uuid),
    UNIQUE (dag_id, job_name, output_index),
    FOREIGN KEY (org_id, dag_id) REFERENCES dags (org_id, dag_id) ON DELETE CASCADE,
    CHECK ((storage = 'postgres') = (write_mode IS NOT NULL)),
    CHECK ((storage = 's3') = (format IS NOT NULL)),
    CHECK (dataset_name IS NULL OR storage <> 'none'),
    CHECK ((dataset_name IS NULL) = (published_at IS NULL))
);

-- Extra roles that may read a dataset (empty: the producing DAG's deployers and org admins only).
CREATE TABLE dataset_read_roles (
    org_id uuid NOT NULL,
    dataset_uuid uuid NOT NULL,
    role_id uuid NOT NULL,
    PRIMARY KEY (dataset_uuid, role_id),
    FOREIGN KEY (org_id, dataset_uuid) REFERENCES datasets (org_id, dataset_uuid) ON DELETE CASCADE,
    FOREIGN KEY (org_id, role_id) REFERENCES org_roles (org_id, role_id) ON DELETE CASCADE
);

-- Materializations of a dataset. Data is written only into a version's own location; "current" is a
-- pointer-set entry. A version is kept until an admin purges it.
CREATE TABLE dataset_versions (
    dataset_version uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dataset_uuid uuid NOT NULL,
    job_id uuid NOT NULL,
    storage_location text,
    created_at timestamptz NOT NULL DEFAULT now(),
    purged_at timestamptz,
    -- written by a job deployed with ?rematerialize=none: shares the storage of the version it continues
    continues_version uuid REFERENCES dataset_versions DEFERRABLE INITIALLY DEFERRED,
    UNIQUE (dataset_uuid, dataset_version),
    UNIQUE (job_id, dataset_uuid),
    FOREIGN KEY (org_id, dataset_uuid) REFERENCES datasets (org_id, dataset_uuid) ON DELETE CASCADE,
    FOREIGN KEY (org_id, job_id) REFERENCES jobs (org_id, job_id) DEFERRABLE INITIALLY DEFERRED
);

-- What readers of a DAG see: dataset_uuid -> dataset_version. Cutover and rollback swap
-- dags.active_pointer_set_id in one transaction, compare-and-swap on the set they replace.
CREATE TABLE pointer_sets (
    pointer_set_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dag_id uuid NOT NULL,
    dag_version_id uuid NOT NULL,
    replaces_pointer_set_id uuid REFERENCES pointer_sets ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dag_id, pointer_set_id),
    FOREIGN KEY (org_id, dag_id) REFERENCES dags (org_id, dag_id) ON DELETE CASCADE,
    FOREIGN KEY (dag_id, dag_version_id) REFERENCES dag_versions (dag_id, dag_version_id)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE pointer_set_entries (
    pointer_set_id uuid NOT NULL REFERENCES pointer_sets ON DELETE CASCADE,
    dataset_uuid uuid NOT NULL,
    dataset_version uuid NOT NULL,
    PRIMARY KEY (pointer_set_id, dataset_uuid),
    FOREIGN KEY (dataset_uuid, dataset_version) REFERENCES dataset_versions (dataset_uuid, dataset_version)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX pointer_set_entries_version ON pointer_set_entries (dataset_version);

ALTER TABLE dags
    ADD CONSTRAINT dags_active_pointer_set_fk FOREIGN KEY (dag_id, active_pointer_set_id)
        REFERENCES pointer_sets (dag_id, pointer_set_id) DEFERRABLE INITIALLY DEFERRED;

-- The durable queue: one task per (job, input event); a source run is a task with no input event; a batch
-- query's task has no input event either, and names its query.
CREATE TABLE tasks (
    task_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dag_id uuid NOT NULL,
    dag_version_id uuid NOT NULL,
    job_id uuid NOT NULL,
    input_event_id bigint,
    runtime text NOT NULL CHECK (runtime IN ('ecs_python', 'lambda_py', 'dispatcher')),
    partition_key text,
    status text NOT NULL DEFAULT 'Queued'
        CHECK (status IN ('Queued', 'Dispatched', 'Running', 'Completed', 'Failed', 'Canceled')),
    attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    not_before timestamptz NOT NULL DEFAULT now(),
    cancel_requested_at timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz,
    finished_at timestamptz,
    query_id uuid,
    CONSTRAINT tasks_one_per_event UNIQUE (job_id, input_event_id),
    CONSTRAINT tasks_query_has_no_event CHECK (query_id IS NULL OR input_event_id IS NULL),
    FOREIGN KEY (org_id, job_id) REFERENCES jobs (org_id, job_id) ON DELETE CASCADE,
    FOREIGN KEY (dag_id, dag_version_id) REFERENCES dag_versions (dag_id, dag_version_id)
        DEFERRABLE INITIALLY DEFERRED,
    CHECK (attempt_count <= max_attempts),
    CHECK ((status IN ('Completed', 'Failed', 'Canceled')) = (finished_at IS NOT NULL)),
    -- the dispatcher starts and finishes an attempt of its own operators in one transaction
    CONSTRAINT tasks_dispatcher_never_handed_out CHECK (runtime <> 'dispatcher' OR status NOT IN ('Dispatched', 'Running'))
);
CREATE UNIQUE INDEX tasks_one_live_source_run ON tasks (job_id)
    WHERE input_event_id IS NULL AND query_id IS NULL AND status IN ('Queued', 'Dispatched', 'Running');
-- partial: the other tasks write no entry here
CREATE UNIQUE INDEX tasks_one_per_query ON tasks (query_id) WHERE query_id IS NOT NULL;
CREATE INDEX tasks_ready ON tasks (runtime, not_before) WHERE status = 'Queued';
-- PerPartition tasks only: the scheduler's check that nothing of a partition is in flight.
CREATE INDEX tasks_live_partition ON tasks (job_id, partition_key, input_event_id)
    WHERE partition_key IS NOT NULL AND status IN ('Queued', 'Dispatched', 'Running');
CREATE INDEX tasks_dag_created ON tasks (dag_id, created_at DESC, task_id);
-- The catch-up check of a rebuild asks for failed or canceled tasks of its jobs on every pass; failures are
-- rare, so this index stays small and a task's normal transitions never touch it.
CREATE INDEX tasks_ended_badly ON tasks (job_id) WHERE status IN ('Failed', 'Canceled');

-- "Dataset D, version V changed for this scope". The dedup key of SPEC §4 is
-- (producer_task_id, dataset_uuid, scope_key): a retried attempt that re-emits an event is a no-op.
CREATE TABLE events (
    event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id uuid NOT NULL,
    dataset_uuid uuid NOT NULL,
    dataset_version uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('data', 'invalidation')),
    scope_cursor text,
    partition_key text,
    range_start bigint,
    range_end bigint,
    scope_key text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    -- the producing task and attempt: no foreign keys, see delete_task_owned_rows
    producer_task_id uuid NOT NULL,
    producer_attempt_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_dedup UNIQUE (producer_task_id, dataset_uuid, scope_key),
    FOREIGN KEY (dataset_uuid, dataset_version) REFERENCES dataset_versions (dataset_uuid, dataset_version)
        DEFERRABLE INITIALLY DEFERRED,
    CHECK (num_nonnulls(scope_cursor, partition_key, range_start) >= 1),
    CHECK ((range_start IS NULL) = (range_end IS NULL)),
    CHECK (range_start <= range_end),
    CHECK (pg_column_size(payload) <= 65536)
);
CREATE INDEX events_dataset_version ON events (dataset_version, event_id);

-- The router's to-do list: the ids of the events it has not routed yet, queued by the statement that stores them and
-- deleted by the router pass that makes their tasks. A table of its own, not a column of `events` with a partial
-- index: an event row is written once and never updated (0012).
CREATE TABLE unrouted_events (
    event_id bigint PRIMARY KEY  -- no foreign key: queued by the statement that stores the event
);

ALTER TABLE tasks
    ADD CONSTRAINT tasks_input_event_fk FOREIGN KEY (input_event_id) REFERENCES events
        DEFERRABLE INITIALLY DEFERRED;

-- Executions of a task. Only the newest attempt may report; its token is stored hashed.
CREATE TABLE task_attempts (
    attempt_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL,  -- no foreign key: see delete_task_owned_rows
    attempt_number integer NOT NULL CHECK (attempt_number >= 1),
    attempt_token_hash bytea NOT NULL CHECK (length(attempt_token_hash) = 32),
    status text NOT NULL DEFAULT 'Running'
        CHECK (status IN ('Running', 'Succeeded', 'Failed', 'TimedOut', 'Canceled')),
    lease_expires_at timestamptz NOT NULL,
    worker_id text,
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (task_id, attempt_number),
    CHECK ((status = 'Running') = (finished_at IS NULL))
);
CREATE UNIQUE INDEX task_attempts_one_running ON task_attempts (task_id) WHERE status = 'Running';
CREATE INDEX task_attempts_lease ON task_attempts (lease_expires_at) WHERE status = 'Running';

-- Lineage: which input event, of which dataset version, a task consumed. A task has at most one (one task per
-- incoming event, SPEC §4), named by `tasks.input_event_id`, so lineage is read from there rather than stored twice
-- (0012).
CREATE VIEW task_inputs AS
SELECT t.task_id, t.input_event_id AS event_id, e.dataset_uuid, e.dataset_version
FROM tasks t JOIN events e ON e.event_id = t.input_event_id;

-- How a job reads: input i of a job is a dataset, produced in this DAG by upstream_job_id, or published
-- by another DAG (upstream_job_id null). The router finds subscribers here.
CREATE TABLE job_inputs (
    job_id uuid NOT NULL REFERENCES jobs ON DELETE CASCADE,
    input_index integer NOT NULL CHECK (input_index >= 0),
    dataset_uuid uuid NOT NULL REFERENCES datasets DEFERRABLE INITIALLY DEFERRED,
    upstream_job_id uuid REFERENCES jobs DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (job_id, input_index)
);
CREATE INDEX job_inputs_dataset ON job_inputs (dataset_uuid);
CREATE INDEX job_inputs_upstream ON job_inputs (upstream_job_id);

-- Durable operator state (range_aggregator boundaries, block_follower cursor), keyed by (org_id, job_id);
-- revision makes each write a compare-and-swap.
CREATE TABLE operator_state (
    org_id uuid NOT NULL,
    job_id uuid NOT NULL,
    state jsonb NOT NULL,
    revision bigint NOT NULL DEFAULT 1 CHECK (revision >= 1),
    updated_by_task_id uuid REFERENCES tasks ON DELETE SET NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, job_id),
    FOREIGN KEY (org_id, job_id) REFERENCES jobs (org_id, job_id) ON DELETE CASCADE
);

-- Worker pool slots of a DAG: plain env and secret references (never values). retired_at marks slots a
-- later deploy removed.
CREATE TABLE worker_pool_slots (
    slot_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dag_id uuid NOT NULL,
    pool_name text NOT NULL CHECK (pool_name ~ '^[a-z][a-z0-9_]{0,63}$'),
    slot_index integer NOT NULL CHECK (slot_index >= 0),
    env jsonb NOT NULL DEFAULT '{}',
    secret_env jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    UNIQUE (dag_id, pool_name, slot_index),
    FOREIGN KEY (org_id, dag_id) REFERENCES dags (org_id, dag_id) ON DELETE CASCADE
);

-- A slot is held by at most one task, and a task holds at most one slot.
CREATE TABLE slot_leases (
    slot_id uuid PRIMARY KEY REFERENCES worker_pool_slots ON DELETE CASCADE,
    task_id uuid NOT NULL UNIQUE REFERENCES tasks ON DELETE CASCADE,
    leased_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CHECK (expires_at > leased_at)
);

-- "This would have alerted": append-only rows of alert_evaluate, one dataset version each.
CREATE TABLE alert_events (
    alert_event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    dataset_uuid uuid NOT NULL,
    dataset_version uuid NOT NULL,
    producer_task_id uuid REFERENCES tasks ON DELETE SET NULL,
    alert_name text NOT NULL CHECK (length(alert_name) BETWEEN 1 AND 200),
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    event_time timestamptz NOT NULL,
    block_number bigint,
    dedup_key text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (dataset_version, dedup_key),
    FOREIGN KEY (org_id, dataset_uuid) REFERENCES datasets (org_id, dataset_uuid) ON DELETE CASCADE,
    FOREIGN KEY (dataset_uuid, dataset_version) REFERENCES dataset_versions (dataset_uuid, dataset_version)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX alert_events_time ON alert_events (dataset_version, event_time);

-- Work items for the Delivery Service, leased and retried there; the idempotency key is deterministic
-- across retries and rematerializations, so a delivery is made once per org.
CREATE TABLE alert_deliveries (
    delivery_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs ON DELETE CASCADE,
    alert_event_id uuid NOT NULL REFERENCES alert_events ON DELETE CASCADE,
    destination_kind text NOT NULL CHECK (destination_kind IN ('slack', 'pagerduty', 'webhook')),
    destination jsonb NOT NULL,
    idempotency_key text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'leased', 'sent', 'failed', 'suppressed')),
    attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts integer NOT NULL DEFAULT 8 CHECK (max_attempts >= 1),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_expires_at timestamptz,
    last_status_code integer,
    last_error text,
    suppressed_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    UNIQUE (org_id, idempotency_key),
    CHECK ((status = 'leased') = (lease_expires_at IS NOT NULL AND lease_owner IS NOT NULL)),
    CHECK ((status = 'suppressed') = (suppressed_reason IS NOT NULL)),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alert_deliveries_lease ON alert_deliveries (lease_expires_at) WHERE status = 'leased';

-- Names and metadata of secrets; values live in the secret backend (AWS Secrets Manager or the local
-- encrypted store) and never in Postgres. Full path: /{env}/{org}/{scope}/{name}.
CREATE TABLE secrets (
    secret_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES orgs ON DELETE CASCADE,
    env text NOT NULL CHECK (env ~ '^[a-z][a-z0-9_-]{0,31}$'),
    scope text NOT NULL CHECK (scope IN ('platform', 'user')),
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_./-]{0,255}$'),
    backend_ref text NOT NULL,
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, env, scope, name),
    FOREIGN KEY (org_id, created_by) REFERENCES users (org_id, user_id) ON DELETE SET NULL (created_by)
);

-- Query Service runs: what each asked for, batch queries' status and results, and every query's pins. A batch
-- query's task names it (tasks.query_id), and the query follows that task's status (follow_query_task).
CREATE TABLE queries (
    query_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    user_id uuid NOT NULL,
    sql text NOT NULL,
    mode text NOT NULL CHECK (mode IN ('interactive', 'batch')),
    status text NOT NULL CHECK (status IN ('Queued', 'Running', 'Completed', 'Failed', 'Canceled')),
    result_location text,
    row_count bigint,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    max_rows bigint CHECK (max_rows >= 1),
    timeout_s double precision CHECK (timeout_s > 0),
    format text CHECK (format IN ('json', 'arrow', 'csv')),
    truncated boolean,
    result_columns jsonb,
    started_at timestamptz,
    FOREIGN KEY (org_id, user_id) REFERENCES users (org_id, user_id) ON DELETE CASCADE,
    CHECK ((status IN ('Completed', 'Failed', 'Canceled')) = (finished_at IS NOT NULL)),
    CONSTRAINT queries_batch_limits
        CHECK (mode <> 'batch' OR (max_rows IS NOT NULL AND timeout_s IS NOT NULL AND format IS NOT NULL))
);
CREATE INDEX queries_user ON queries (user_id, created_at DESC);

ALTER TABLE tasks
    ADD CONSTRAINT tasks_query_fk FOREIGN KEY (query_id) REFERENCES queries ON DELETE CASCADE;

-- The versions a query pinned at its start; a version pinned by an unfinished query is never purged.
CREATE TABLE query_pins (
    query_id uuid NOT NULL REFERENCES queries ON DELETE CASCADE,
    dataset_uuid uuid NOT NULL,
    dataset_version uuid NOT NULL,
    PRIMARY KEY (query_id, dataset_uuid),
    FOREIGN KEY (dataset_uuid, dataset_version) REFERENCES dataset_versions (dataset_uuid, dataset_version)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX query_pins_version ON query_pins (dataset_version);

-- Task ids handed to the embedded (Postgres-backed) transport and not yet taken by a worker's poll.
CREATE TABLE transport_queue (
    task_id uuid PRIMARY KEY,  -- no foreign key: see delete_task_owned_rows
    runtime text NOT NULL CHECK (runtime IN ('ecs_python', 'lambda_py')),
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transport_queue_runtime ON transport_queue (runtime, enqueued_at);

-- The scheduler counts in-flight tasks per runtime and per job on every pass.
CREATE INDEX tasks_in_flight ON tasks (runtime, job_id) WHERE status IN ('Dispatched', 'Running');
-- ...and reads each job's queue head in event order, as an index scan that stops after the few rows it takes.
CREATE INDEX tasks_queued_in_order ON tasks (job_id, input_event_id, created_at, task_id) WHERE status = 'Queued';

-- The rows a task owns (attempts, emitted events, transport-queue entry) carry no foreign key to it:
-- a check is a trigger and a lookup per inserted row (~4 us quiet, ~25 us on a loaded machine), a task took
-- fourteen, and these rows are written only by statements that create the task or hold its row locked, so the
-- reference holds by construction. Deleting a task (with its job or org) still takes them along.
CREATE FUNCTION delete_task_owned_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_attempts WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM unrouted_events WHERE event_id IN (
        SELECT event_id FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks));
    DELETE FROM events WHERE producer_task_id IN (SELECT task_id FROM deleted_tasks);
    DELETE FROM transport_queue WHERE task_id IN (SELECT task_id FROM deleted_tasks);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_delete_owned_rows AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS deleted_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION delete_task_owned_rows();

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

-- The partition a task of a PerPartition job runs in: the router and a rebuild's backfill both use it.
CREATE FUNCTION task_partition_key(execution_strategy text, partition_key text, range_start bigint,
                                   range_end bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN execution_strategy = 'PerPartition'
                THEN coalesce(partition_key, range_start || '-' || range_end, '') END
$$;

-- Where an event's scope stands in its stream, when that is a number: a range's end, or a cursor of digits.
-- Rebuild progress compares it against the head of an input; other scopes (partition keys) have none.
CREATE FUNCTION scope_position(scope_cursor text, range_end bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(range_end, CASE WHEN scope_cursor ~ '^[0-9]{1,18}$' THEN scope_cursor::bigint END)
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

-- The dataset version each job input reads: the one its upstream job writes, or (another DAG's published
-- dataset) the version that DAG's readers see now. Backfills, the catch-up check and progress read inputs here.
CREATE VIEW job_input_versions AS
SELECT ji.job_id, ji.input_index, ji.dataset_uuid, ji.upstream_job_id,
       coalesce(uv.dataset_version, cur.dataset_version) AS dataset_version
FROM job_inputs ji
LEFT JOIN dataset_versions uv ON uv.job_id = ji.upstream_job_id AND uv.dataset_uuid = ji.dataset_uuid
LEFT JOIN current_dataset_versions cur ON ji.upstream_job_id IS NULL AND cur.dataset_uuid = ji.dataset_uuid;

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
