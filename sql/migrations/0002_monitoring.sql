-- 0002 monitoring: settings, the worker registry, the retry log, and indexes for the views.

-- Monitoring and retention settings (one row; change them with pgq.configure).
CREATE TABLE pgq.settings (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    history_retention interval NOT NULL DEFAULT interval '7 days'
        CHECK (history_retention >= interval '0'),
    worker_stale_after interval NOT NULL DEFAULT interval '1 minute'
        CHECK (worker_stale_after > interval '0')
);

INSERT INTO pgq.settings DEFAULT VALUES;

-- Workers that announced themselves (pgq.register_worker); each one writes only its own row.
CREATE TABLE pgq.worker_registry (
    worker_id text PRIMARY KEY,
    hostname text,
    pid integer,
    entrypoints text[] NOT NULL DEFAULT '{}',
    concurrency integer,
    version text,
    started_at timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);

-- One row per failed try that was scheduled to run again: insert-only, so workers that finish
-- jobs at the same time never wait on a shared row. Pruned with the history.
CREATE TABLE pgq.job_retries (
    job_id bigint NOT NULL,
    entrypoint text NOT NULL,
    attempt integer NOT NULL,
    failed_at timestamptz NOT NULL,
    error text
);

CREATE INDEX job_retries_failed_idx ON pgq.job_retries USING brin (failed_at)
    WITH (autosummarize = on);

-- Summarize each filled block range of the finish-time BRIN index within about a minute (an
-- autovacuum work item) instead of at the next VACUUM: every query of recent history reads all
-- the ranges not summarized yet, up to the whole table after a bulk of completions.
ALTER INDEX pgq.job_history_finished_idx SET (autosummarize = on);

-- Scheduled jobs per entrypoint by due time: queue_stats counts them (and the due ones) from
-- the index alone. Only scheduled rows pay for it; an immediate enqueue does not.
CREATE INDEX jobs_scheduled_idx ON pgq.jobs (entrypoint, run_at) WHERE state = 'scheduled';

INSERT INTO pgq.migrations (version, name) VALUES (2, 'monitoring');
