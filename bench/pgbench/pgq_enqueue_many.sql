-- pgq-thin: enqueue a batch of 100 no-op jobs in one call (compare with floor_insert.sql's raw INSERT).
SELECT count(*) FROM pgq.enqueue_many(array_fill('bench'::text, ARRAY[100]), array_fill('{}'::jsonb, ARRAY[100]));
