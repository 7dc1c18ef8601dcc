-- How pgq.queue_stats (and the other monitoring views) behave at scale: 1,000,000 history rows
-- spread over the 7 days of retention and 100,000 queued jobs (+5,000 scheduled, 50 running)
-- in 10 entrypoints. A measurement, not a test. Run on an empty database with the schema:
--   createdb pgq_scale && pgq-thin install -d pgq_scale
--   psql -X -d pgq_scale -f bench/monitoring_scale.sql
\set ON_ERROR_STOP 1
\timing on
SET synchronous_commit = off;
INSERT INTO pgq.entrypoints (name, concurrency_limit)
SELECT 'ep' || i, CASE WHEN i = 1 THEN 8 END FROM generate_series(1, 10) AS i;
-- History in finishing order: 2% failed, 1% cancelled.
INSERT INTO pgq.job_history (id, entrypoint, state, priority, attempt, worker_id, enqueued_at,
                             started_at, finished_at, error, payload, headers)
SELECT i, 'ep' || (1 + i % 10),
       CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 100 = 1 THEN 'cancelled' ELSE 'succeeded' END,
       0, 1, 'w1', t - interval '2 seconds', t - interval '0.5 seconds', t,
       CASE WHEN i % 50 = 0 THEN 'boom' END, '{"n": 1}', '{}'
FROM generate_series(1, 1000000) AS i,
     LATERAL (SELECT now() - interval '7 days' + i * interval '7 days' / 1000000) AS x(t);
INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, enqueued_at, payload)
OVERRIDING SYSTEM VALUE
SELECT 1000000 + i, 'ep' || (1 + i % 10), 'queued', i % 3,
       now() - interval '1 hour' + i * interval '30 ms', now() - interval '1 hour', '{"n": 1}'
FROM generate_series(1, 100000) AS i;
INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, enqueued_at, payload)
OVERRIDING SYSTEM VALUE
SELECT 1100000 + i, 'ep' || (1 + i % 10), 'scheduled', 0, now() + i * interval '1 s', now(), '{}'
FROM generate_series(1, 5000) AS i;
INSERT INTO pgq.jobs (id, entrypoint, state, priority, run_at, enqueued_at, payload, attempt,
                      lease_token, lease_expires_at, timeout_at, worker_id, started_at)
OVERRIDING SYSTEM VALUE
SELECT 1200000 + i, 'ep' || (1 + i % 10), 'running', 0, now(), now(), '{}', 1, gen_random_uuid(),
       now() + interval '30 s', now() + interval '5 min', 'w' || (i % 4), now()
FROM generate_series(1, 50) AS i;
SELECT setval('pgq.jobs_id_seq', 1300000);

-- Statistics as autovacuum's ANALYZE leaves them, before any VACUUM sets the visibility map
-- (the hot table's usual state): index-only scans still visit the heap. First with the BRIN
-- ranges of the bulk load not summarized yet (every one of them is read), then summarized, as
-- the index's autosummarize leaves them within about a minute of each range filling up.
ANALYZE pgq.entrypoints, pgq.jobs, pgq.job_history;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.queue_stats;
SELECT brin_summarize_new_values('pgq.job_history_finished_idx') AS summarized_ranges;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.queue_stats;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.queue_stats;

-- After VACUUM: index-only scans.
VACUUM ANALYZE pgq.jobs, pgq.job_history;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.queue_stats;
SELECT * FROM pgq.queue_stats;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.throughput;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.health;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.workers;
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM pgq.failed_jobs LIMIT 20;
