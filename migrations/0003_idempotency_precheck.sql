-- 0003_idempotency_precheck: step 1 of 3 of the idempotency migration.
--   1. Refuses, changing nothing, while duplicate (portfolio_id, snapshot_date)
--      rows exist: the unique index of 0004 could not be built. The error says
--      how many groups, gives an example and the command that fixes it.
--   2. Adds is_complete. Existing rows count as complete (DEFAULT true); a
--      claim inserts false explicitly. A constant default on PostgreSQL >= 11
--      is a catalog-only change: no table rewrite.
-- One transaction: on any failure nothing of it remains.
-- depends: 0002b_rescue_audit
-- transactional: true

SET lock_timeout = '5s';
SET statement_timeout = '5min';

DO $precheck$
DECLARE
    n_groups bigint;
    ex_portfolio bigint;
    ex_date date;
    ex_rows bigint;
BEGIN
    SELECT count(*) INTO n_groups FROM (
        SELECT 1 FROM portfolio_snapshots
        GROUP BY portfolio_id, snapshot_date HAVING count(*) > 1
    ) AS dup;
    IF n_groups > 0 THEN
        SELECT portfolio_id, snapshot_date, count(*)
          INTO ex_portfolio, ex_date, ex_rows
          FROM portfolio_snapshots
         GROUP BY portfolio_id, snapshot_date HAVING count(*) > 1
         ORDER BY portfolio_id, snapshot_date LIMIT 1;
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = 'duplicate snapshots: ' || n_groups
                || ' (portfolio_id, snapshot_date) groups have more than one row, e.g. portfolio '
                || ex_portfolio || ' on ' || ex_date || ' has ' || ex_rows || ' rows',
            DETAIL = 'uq_portfolio_snapshot_date cannot be added while duplicates exist. Nothing was changed.',
            HINT = 'Run `pnl dedupe --dry-run` to review, `pnl dedupe` to archive and delete the extras, then `pnl migrate` again.';
    END IF;
END
$precheck$;

ALTER TABLE portfolio_snapshots ADD COLUMN IF NOT EXISTS is_complete boolean NOT NULL DEFAULT true;
