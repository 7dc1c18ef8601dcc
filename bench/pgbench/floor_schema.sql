-- A minimal jobs table: the floor any SQL queue is measured against.
DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
CREATE TABLE floor.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state text NOT NULL DEFAULT 'queued',
    attempt integer NOT NULL DEFAULT 0,
    lease_token uuid,
    payload jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON floor.jobs (id) WHERE state = 'queued';
