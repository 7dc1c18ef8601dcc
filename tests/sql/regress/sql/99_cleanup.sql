-- Drops the helpers of 00_setup and empties the queue.
SET client_min_messages = warning;
SELECT pgq_test.reset();
DROP SCHEMA pgq_test CASCADE;
SELECT count(*) AS schemas_left FROM pg_namespace WHERE nspname = 'pgq_test';
