-- 0001 initial: the tables of pgq-thin. Functions and views live in sql/api/.

CREATE SCHEMA pgq;

COMMENT ON SCHEMA pgq IS 'pgq-thin job queue';

-- Applied migrations; pgq.version() reads the highest.
CREATE TABLE pgq.migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The fingerprint of the installed objects recorded by the last install/upgrade (pgq-thin verify).
CREATE TABLE pgq.installation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    fingerprint text NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Per-entrypoint policy, shared by every worker in every language.
CREATE TABLE pgq.entrypoints (
    name text PRIMARY KEY,
    concurrency_limit integer CHECK (concurrency_limit > 0),
    max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    timeout interval DEFAULT interval '5 minutes' CHECK (timeout > interval '0'),
    backoff_base interval NOT NULL DEFAULT interval '1 second' CHECK (backoff_base >= interval '0'),
    backoff_factor numeric NOT NULL DEFAULT 2 CHECK (backoff_factor >= 1),
    backoff_max interval NOT NULL DEFAULT interval '1 hour' CHECK (backoff_max >= interval '0'),
    jitter numeric NOT NULL DEFAULT 0.1 CHECK (jitter >= 0 AND jitter <= 1),
    paused boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The hot table: live jobs only (scheduled, queued, running).
CREATE TABLE pgq.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entrypoint text NOT NULL,
    state text NOT NULL CHECK (state IN ('scheduled', 'queued', 'running')),
    priority integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer CHECK (max_attempts > 0),
    dedupe_key text,
    lease_token uuid,
    lease_expires_at timestamptz,
    timeout_at timestamptz,
    worker_id text,
    cancel_requested boolean NOT NULL DEFAULT false,
    enqueued_at timestamptz NOT NULL,
    started_at timestamptz,
    last_error text,
    payload jsonb NOT NULL DEFAULT '{}',
    headers jsonb NOT NULL DEFAULT '{}',
    -- A lease exists exactly while the job runs: matching a token proves the lease, and the
    -- reaper finds leases through their expiry alone.
    CONSTRAINT jobs_lease_check CHECK (
        (state = 'running') = (lease_token IS NOT NULL)
        AND (state = 'running') = (lease_expires_at IS NOT NULL)
    )
);

-- The claim order: per entrypoint, highest priority first, then FIFO.
CREATE INDEX jobs_claim_idx ON pgq.jobs (entrypoint, priority DESC, id) WHERE state = 'queued';
-- Scheduled jobs (delayed enqueue, retry backoff) by due time, promoted to queued when due.
CREATE INDEX jobs_due_idx ON pgq.jobs (run_at) WHERE state = 'scheduled';
-- Running jobs: lease expiry for the reaper, per entrypoint for concurrency limits. The lease
-- index's predicate differs from the other's so that no plan reaps by walking every running job.
CREATE INDEX jobs_lease_idx ON pgq.jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX jobs_running_idx ON pgq.jobs (entrypoint) WHERE state = 'running';
-- At most one live job per dedupe key.
CREATE UNIQUE INDEX jobs_dedupe_idx ON pgq.jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;

ALTER TABLE pgq.jobs SET (fillfactor = 80);

-- Finished jobs (succeeded, failed, cancelled), kept for monitoring and retry.
CREATE TABLE pgq.job_history (
    id bigint PRIMARY KEY,
    entrypoint text NOT NULL,
    state text NOT NULL CHECK (state IN ('succeeded', 'failed', 'cancelled')),
    priority integer NOT NULL,
    attempt integer NOT NULL,
    max_attempts integer,
    dedupe_key text,
    worker_id text,
    enqueued_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz NOT NULL,
    error text,
    result jsonb,
    payload jsonb NOT NULL,
    headers jsonb NOT NULL
);

-- Rows arrive in finishing order, so a BRIN index serves retention and recent counts cheaply.
CREATE INDEX job_history_finished_idx ON pgq.job_history USING brin (finished_at);
CREATE INDEX job_history_failed_idx ON pgq.job_history (entrypoint, finished_at)
    WHERE state = 'failed';

-- The result type of pgq.dequeue.
CREATE TYPE pgq.claimed_job AS (
    id bigint,
    entrypoint text,
    payload jsonb,
    headers jsonb,
    priority integer,
    attempt integer,
    max_attempts integer,
    lease_token uuid,
    lease_expires_at timestamptz,
    enqueued_at timestamptz
);

INSERT INTO pgq.migrations (version, name) VALUES (1, 'initial');
