-- The installed schema version: the number of the last applied migration.
CREATE OR REPLACE FUNCTION pgq.version() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT max(m.version)::text FROM pgq.migrations AS m
$$;
COMMENT ON FUNCTION pgq.version() IS 'The installed schema version (the last applied migration).';

-- One line per catalog fact of schema pgq: tables, columns, indexes, constraints, triggers,
-- views, types, functions and grants. Installs that describe alike are alike.
CREATE OR REPLACE FUNCTION pgq.describe_schema() RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    WITH ns AS (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pgq')
    SELECT line FROM (
        SELECT format('relation %s kind %s acl %s options %s', c.relname, c.relkind, c.relacl, c.reloptions)
        FROM pg_catalog.pg_class AS c, ns WHERE c.relnamespace = ns.oid AND c.relkind <> 'i'
        UNION ALL
        SELECT format('column %s.%s %s notnull %s default %s identity %s', c.relname, a.attname,
                      pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                      pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity)
        FROM pg_catalog.pg_class AS c
        JOIN ns ON c.relnamespace = ns.oid
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
        UNION ALL
        SELECT format('index %s', pg_catalog.pg_get_indexdef(i.indexrelid))
        FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid
        JOIN ns ON c.relnamespace = ns.oid
        UNION ALL
        SELECT format('constraint %s on %s: %s', con.conname, con.conrelid::regclass,
                      pg_catalog.pg_get_constraintdef(con.oid))
        FROM pg_catalog.pg_constraint AS con, ns WHERE con.connamespace = ns.oid
        UNION ALL
        SELECT format('trigger %s', pg_catalog.pg_get_triggerdef(t.oid))
        FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
        JOIN ns ON c.relnamespace = ns.oid WHERE NOT t.tgisinternal
        UNION ALL
        SELECT format('view %s: %s', c.relname, pg_catalog.pg_get_viewdef(c.oid))
        FROM pg_catalog.pg_class AS c, ns WHERE c.relnamespace = ns.oid AND c.relkind IN ('v', 'm')
        UNION ALL
        SELECT format('function %s acl %s comment %s: %s', p.oid::regprocedure, p.proacl,
                      pg_catalog.obj_description(p.oid, 'pg_proc'), pg_catalog.pg_get_functiondef(p.oid))
        FROM pg_catalog.pg_proc AS p, ns WHERE p.pronamespace = ns.oid
        UNION ALL
        SELECT format('type %s kind %s', t.typname, t.typtype)
        FROM pg_catalog.pg_type AS t, ns WHERE t.typnamespace = ns.oid AND t.typtype NOT IN ('b')
          AND t.typrelid = 0
        UNION ALL
        SELECT format('sequence %s', s.seqrelid::regclass)
        FROM pg_catalog.pg_sequence AS s JOIN pg_catalog.pg_class AS c ON c.oid = s.seqrelid
        JOIN ns ON c.relnamespace = ns.oid
    ) AS facts(line)
    ORDER BY line
$$;
COMMENT ON FUNCTION pgq.describe_schema() IS
    'Lists the catalog facts of schema pgq, one per line, sorted (used by verify and the upgrade tests).';

-- A digest of pgq.describe_schema(): equal digests, equal schemas.
CREATE OR REPLACE FUNCTION pgq.fingerprint() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT md5(string_agg(line, E'\n')) FROM pgq.describe_schema() AS d(line)
$$;
COMMENT ON FUNCTION pgq.fingerprint() IS 'md5 of pgq.describe_schema(); recorded at install, checked by verify.';

-- A digest of the lines of pgq.describe_schema() that only migrations make: columns, indexes,
-- constraints, triggers, sequences and types (not functions, views or grants, which every
-- upgrade re-applies). A table someone altered shows here until they undo it.
CREATE OR REPLACE FUNCTION pgq.tables_fingerprint() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
    SELECT md5(string_agg(line, E'\n')) FROM pgq.describe_schema() AS d(line)
    WHERE line ~ '^(column|index|constraint|trigger|sequence|type) '
$$;
COMMENT ON FUNCTION pgq.tables_fingerprint() IS
    'md5 of the table lines of pgq.describe_schema(); recorded when migrations run, checked by verify.';

-- Records the fingerprints of the schema just installed; the last step of every install and
-- upgrade. The tables fingerprint is re-recorded only when a migration ran in this transaction
-- (applied_at is the transaction's start), so an upgrade does not bless a table someone
-- changed; and migrations that ran over such tables (sql/preflight.sql noted it) are refused,
-- which rolls the whole install back.
CREATE OR REPLACE FUNCTION pgq._record_install() RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
DECLARE
    v_migrated boolean := EXISTS (SELECT FROM pgq.migrations AS m WHERE m.applied_at = pg_catalog.now());
    v_fingerprint text;
BEGIN
    IF v_migrated AND pg_catalog.current_setting('pgq.tables_changed', true) = 'true' THEN
        RAISE EXCEPTION 'the tables of schema pgq were changed since pgq-thin installed them '
                        '(a column, index or constraint added or removed)'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'revert that before upgrading, or the migrations would run over tables '
                         'they do not know (pgq-thin verify; nothing was changed)';
    END IF;
    INSERT INTO pgq.installation AS i (singleton, fingerprint, tables_fingerprint, installed_at)
    VALUES (true, pgq.fingerprint(), pgq.tables_fingerprint(), pg_catalog.now())
    ON CONFLICT (singleton) DO UPDATE SET
        fingerprint = excluded.fingerprint,
        installed_at = excluded.installed_at,
        tables_fingerprint = CASE WHEN i.tables_fingerprint IS NULL OR v_migrated
                                  THEN excluded.tables_fingerprint ELSE i.tables_fingerprint END
    RETURNING i.fingerprint INTO v_fingerprint;
    RETURN v_fingerprint;
END
$$;
COMMENT ON FUNCTION pgq._record_install() IS
    'Records pgq.fingerprint() (and, after a migration, pgq.tables_fingerprint()) as installed.';
