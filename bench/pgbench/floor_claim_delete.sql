-- The pure-SQL floor: claim 100 rows with SKIP LOCKED, then delete them.
WITH claimed AS (
    UPDATE floor.jobs SET state = 'running', lease_token = gen_random_uuid(), attempt = attempt + 1
    WHERE id IN (SELECT id FROM floor.jobs WHERE state = 'queued' ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT coalesce(array_agg(id), '{}')::text AS ids FROM claimed \gset
DELETE FROM floor.jobs WHERE id = ANY (':ids'::bigint[]);
