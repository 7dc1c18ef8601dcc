-- pgq-thin: claim 100 jobs, then finish them (two transactions, as a worker does).
SELECT coalesce(array_agg(id), '{}')::text AS ids, coalesce(array_agg(lease_token), '{}')::text AS tokens
FROM pgq.claim(ARRAY['bench'], 100, 'pgbench') \gset
SELECT pgq.complete_many(':ids'::bigint[], ':tokens'::uuid[]);
