-- Records whether the worker that vacuums pgq.jobs has stood down because a transaction holds
-- the cleanup horizon (held_by_pid: that session), or vacuums again (NULL).
CREATE OR REPLACE FUNCTION pgq.report_vacuum(held_by_pid integer) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgq, pg_temp
SECURITY DEFINER
AS $$
BEGIN
    UPDATE pgq.vacuum_state AS v
    SET stood_down_since = CASE WHEN report_vacuum.held_by_pid IS NULL THEN NULL
                                ELSE coalesce(v.stood_down_since, pgq.now()) END,
        held_by_pid = report_vacuum.held_by_pid
    WHERE v.held_by_pid IS DISTINCT FROM report_vacuum.held_by_pid;
END
$$;
COMMENT ON FUNCTION pgq.report_vacuum(integer) IS
    'Records that VACUUM of pgq.jobs stands down while session held_by_pid holds the cleanup horizon (NULL: it runs again).';
