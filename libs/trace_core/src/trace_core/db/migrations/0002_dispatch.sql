-- 0002: what the dispatcher's loops need: the embedded transport's queue and an in-flight index.

-- Task ids handed to the embedded (Postgres-backed) transport and not yet taken by a worker's poll.
CREATE TABLE transport_queue (
    task_id uuid PRIMARY KEY REFERENCES tasks ON DELETE CASCADE,
    runtime text NOT NULL CHECK (runtime IN ('ecs_python', 'lambda_py')),
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transport_queue_runtime ON transport_queue (runtime, enqueued_at);

-- The scheduler counts in-flight tasks per runtime and per job on every pass.
CREATE INDEX tasks_in_flight ON tasks (runtime, job_id) WHERE status IN ('Dispatched', 'Running');
-- ...and reads each job's queue head in event order.
CREATE INDEX tasks_queued_in_order ON tasks (job_id, input_event_id, created_at) WHERE status = 'Queued';
