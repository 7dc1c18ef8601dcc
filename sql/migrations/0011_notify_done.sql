-- 0011 notify_done: the live jobs whose end is announced on NOTIFY pgq_done, flagged by a client
-- that waits for them (pgq.watch_jobs). NOTIFY serializes the commits of every notifying
-- transaction of the cluster (PostgreSQL holds one lock until after the commit's flush): claim +
-- complete with two sessions lost about 11% when every job notified, more with more sessions
-- (bench/RESULTS.md), so jobs nobody waits for send nothing.
ALTER TABLE pgq.jobs ADD COLUMN notify_done boolean NOT NULL DEFAULT false;

INSERT INTO pgq.migrations (version, name) VALUES (11, 'notify_done');
