-- Input limits: every bound of docs/sql-api.md's "Limits" table, at the bound and just past it,
-- hostile strings stored verbatim, and empty batches.
\set VERBOSITY terse
SELECT pgq_test.start();

-- Entrypoint names: up to 200 characters, any printable ones (quotes, semicolons, dollars,
-- backslashes, non-ASCII letters) stored as given.
SELECT pgq.enqueue(repeat('e', 200)) AS longest_name;
SELECT pgq.enqueue($n$it's; DROP TABLE pgq.jobs; --$n$) AS sql_in_name;
SELECT pgq.enqueue('$$ \x00 \\ "quoted" émail 送信') AS odd_name;
SELECT char_length(entrypoint) AS chars, entrypoint = repeat('e', 200) AS long_kept
FROM pgq.jobs WHERE id = 1;
SELECT entrypoint FROM pgq.jobs WHERE id > 1 ORDER BY id;
SELECT count(*) AS entrypoint_rows FROM pgq.entrypoints;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.enqueue(repeat('e', 201));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue(E'line\nbreak');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue(E'tab\there');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue(E'bell\x07');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue(E'del\x7f');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue(E'c1\u0085');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['ok', E'x\ry'], NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue(ARRAY[repeat('e', 201)]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue(ARRAY(SELECT 'e' || g FROM generate_series(1, 10001) AS g));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint(E'new\nline');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;

-- Payload and headers: any JSON up to pgq.settings.max_payload_bytes / max_headers_bytes
-- (the size of the jsonb value), stored as given.
SELECT pgq_test.reset();
SELECT max_payload_bytes, max_headers_bytes FROM pgq.settings;
SELECT pgq.enqueue('p', $j${"sql": "'; DROP TABLE pgq.jobs; --", "dollars": "$$ $x$", "escapes": "\\u0000 \" \\ \n \t", "nested": [[[[[[[[[[{"deep": true}]]]]]]]]]]}$j$);
SELECT payload FROM pgq.jobs;
SELECT pgq.configure(max_payload_bytes => 100, max_headers_bytes => 50);
SELECT pgq.enqueue('p', jsonb_build_object('s', repeat('x', 80))) AS fits;
SELECT pg_column_size(payload) AS payload_bytes FROM pgq.jobs WHERE id = 2;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.enqueue('p', jsonb_build_object('s', repeat('x', 90)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['p', 'p'], ARRAY['{}', jsonb_build_object('s', repeat('x', 90))]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('p', headers => jsonb_build_object('trace', repeat('t', 40)));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('p', headers => 'null');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- PostgreSQL itself refuses \u0000 in jsonb, before any pgq function runs.
SELECT pgq.enqueue('p', '{"nul": "\u0000"}');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.configure(max_payload_bytes => 0);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.configure(max_headers_bytes => -1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
SELECT pgq.configure(max_payload_bytes => 1048576, max_headers_bytes => 65536);
SELECT max_payload_bytes, max_headers_bytes FROM pgq.settings;

-- Priority: -32768 to 32767. run_at: finite, at most 10 years ahead (any past time is due).
-- dedupe_key: up to 512 characters.
SELECT pgq_test.reset();
SELECT pgq.enqueue('r', priority => -32768) AS lowest, pgq.enqueue('r', priority => 32767) AS highest;
SELECT pgq.enqueue('r', run_at => '2040-01-01 00:00:00+00') AS ten_years;
SELECT pgq.enqueue('r', run_at => '1970-01-01 00:00:00+00') AS long_ago;
SELECT pgq.enqueue('r', dedupe_key => repeat('k', 512)) AS longest_key;
SELECT id, state, priority, run_at, char_length(dedupe_key) AS key_chars FROM pgq.jobs ORDER BY id;
SELECT pgq_test.digest() AS before \gset
SELECT pgq.enqueue('r', priority => 32768);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('r', priority => -32769);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue_many(ARRAY['r', 'r'], NULL, priorities => ARRAY[0, 2147483647]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('r', run_at => '2040-01-01 00:00:01+00');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('r', run_at => 'infinity');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('r', run_at => '-infinity');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.enqueue('r', dedupe_key => repeat('k', 513));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;

-- Batches: at most 10,000 jobs per call; an empty batch (or NULL arrays) does nothing.
SELECT pgq_test.reset();
SELECT count(*) AS enqueued FROM pgq.enqueue_many(array_fill('b'::text, ARRAY[10000]), NULL);
SELECT count(*) AS claimed FROM pgq.dequeue('{b}', 10000);
SELECT pgq_test.digest() AS before \gset
SELECT pgq.enqueue_many(array_fill('b'::text, ARRAY[10001]), NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.complete_many(array_fill(1::bigint, ARRAY[10001]), array_fill(NULL::uuid, ARRAY[10001]));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.fail_many(array_fill(1::bigint, ARRAY[10001]), array_fill(NULL::uuid, ARRAY[10001]),
                     array_fill('e'::text, ARRAY[10001]));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.heartbeat(array_fill(1::bigint, ARRAY[10001]), array_fill(NULL::uuid, ARRAY[10001]));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.release(array_fill(1::bigint, ARRAY[10001]), array_fill(NULL::uuid, ARRAY[10001]));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.enqueue_many('{}', '{}');
SELECT * FROM pgq.enqueue_many('{}', NULL, dedupe_keys => '{}');
SELECT pgq.complete_many('{}', '{}') AS completed, pgq.complete_many(NULL, NULL) AS completed_null;
SELECT * FROM pgq.fail_many('{}', '{}', '{}');
SELECT * FROM pgq.fail_many(NULL, NULL, NULL);
SELECT * FROM pgq.heartbeat('{}', '{}');
SELECT * FROM pgq.heartbeat(NULL, NULL);
SELECT pgq.release('{}', '{}') AS released, pgq.release(NULL, NULL) AS released_null;
-- Empty, but not of equal length, is still a mismatch.
SELECT pgq.enqueue_many('{}', ARRAY['{}']::jsonb[]);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;

-- Durations: at most 10 years (leases, policy intervals, retention); backoff_factor 1 to 100;
-- jitter 0 to 1 (NaN is refused); worker ids up to 200 characters.
SELECT pgq_test.reset();
SELECT pgq.set_entrypoint('t', timeout => '10 years', backoff_base => '10 years', backoff_max => '10 years',
                          backoff_factor => 100, jitter => 1);
SELECT name, timeout, backoff_base, backoff_factor, backoff_max, jitter FROM pgq.entrypoints;
SELECT pgq.enqueue('t');
SELECT count(*) AS claimed FROM pgq.dequeue('{t}', 1, repeat('w', 200), lease_duration => '10 years');
SELECT lease_expires_at FROM pgq.jobs;
SELECT pgq.register_worker(repeat('w', 200));
SELECT pgq_test.digest() AS before \gset
SELECT pgq.set_entrypoint('t', timeout => '10 years 1 day');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('t', backoff_base => '10 years 1 second');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('t', backoff_max => '11 years');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('t', backoff_factor => 100.5);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('t', backoff_factor => 'NaN');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('t', backoff_factor => 'Infinity');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.set_entrypoint('t', jitter => 'NaN');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{t}', 1, 'w', lease_duration => '10 years 1 day');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.dequeue('{t}', 1, repeat('w', 201));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM pgq.heartbeat(ARRAY[1], ARRAY[pgq_test.token(1)], '10 years 1 day');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.register_worker(repeat('w', 201));
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.configure(history_retention => '10 years 1 day');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq.configure(worker_stale_after => '11 years');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pgq_test.digest() = :'before' AS unchanged;
SELECT pgq.deregister_worker(repeat('w', 200));
