-- 0010 tables fingerprint: the fingerprint of what only migrations make (columns, indexes,
-- constraints, triggers, sequences, types), kept apart from the whole-schema one. An upgrade
-- re-applies functions, views and grants, so it may re-record the whole fingerprint, but not
-- this one unless a migration ran: a column someone added stays visible to `verify`.
ALTER TABLE pgq.installation ADD COLUMN tables_fingerprint text;

INSERT INTO pgq.migrations (version, name) VALUES (10, 'tables_fingerprint');
