-- Preflight: refuse a schema named pgq that pgq-thin did not create (SkyTools PgQ, loaded as
-- the extension pgq or from its scripts, or anything else a user named pgq). Every install,
-- upgrade and uninstall runs this first, so they change nothing then. For pgq-thin's own
-- schema it notes, for this transaction, whether its tables were changed since migrations
-- last ran (pgq._record_install refuses to record migrations run over such tables).
-- pgq-thin's schema is known by the table pgq.installation, which migration 0001 creates with
-- the schema in every release (so older installs are recognised too); a schema an extension
-- owns or lives in is never pgq-thin's.
DO $preflight$
DECLARE
    extensions text;
BEGIN
    IF pg_catalog.to_regnamespace('pgq') IS NULL THEN
        RETURN;
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(e.extname), ', ' ORDER BY e.extname)
    INTO extensions
    FROM pg_catalog.pg_extension AS e
    WHERE e.extnamespace = 'pgq'::regnamespace
       OR EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                  WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
                    AND d.objid = 'pgq'::regnamespace
                    AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                    AND d.refobjid = e.oid AND d.deptype = 'e');
    IF extensions IS NULL AND pg_catalog.to_regclass('pgq.installation') IS NOT NULL THEN
        IF pg_catalog.to_regprocedure('pgq.tables_fingerprint()') IS NOT NULL THEN  -- since 0010
            EXECUTE 'SELECT pg_catalog.set_config(''pgq.tables_changed'', '
                    '(i.tables_fingerprint <> pgq.tables_fingerprint())::text, true)'
                    ' FROM pgq.installation AS i';
        END IF;
        RETURN;
    END IF;
    RAISE EXCEPTION 'schema pgq exists and pgq-thin did not create it (%)',
        CASE
            WHEN extensions = 'pgq' THEN 'it belongs to extension pgq: SkyTools PgQ'
            WHEN extensions IS NOT NULL THEN 'it belongs to extension ' || extensions
            ELSE 'it has no table pgq.installation'
        END
        USING ERRCODE = 'duplicate_schema',
              HINT = 'pgq-thin leaves it alone: install pgq-thin into another database';
END
$preflight$;
