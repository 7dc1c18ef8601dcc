-- 0008 held horizon: what the workers' VACUUM of pgq.jobs last found about the cleanup horizon.

-- One row. While a transaction somewhere holds the horizon back, VACUUM can remove nothing it
-- has not already removed: the worker that vacuums stands down and records it here (pgq.health
-- shows it), and pgq.dequeue claims past the entries it already took (see sql/api/dequeue.sql).
CREATE TABLE pgq.vacuum_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    stood_down_since timestamptz,
    held_by_pid integer,
    CHECK ((stood_down_since IS NULL) = (held_by_pid IS NULL))
);

INSERT INTO pgq.vacuum_state DEFAULT VALUES;

INSERT INTO pgq.migrations (version, name) VALUES (8, 'held_horizon');
