-- 0004_snapshot_indexes_concurrently: step 2 of 3 of the idempotency migration.
-- Builds the indexes with CREATE INDEX CONCURRENTLY, which does not block
-- writes, so it cannot run in a transaction: each statement commits on its own.
--   uq_portfolio_snapshot_date         unique (portfolio_id, snapshot_date);
--                                      0005 turns it into the constraint.
--   ix_portfolio_snapshots_incomplete  the unfinished claims, by portfolio then date:
--                                      takeover, "is an earlier date unfinished?", status.
--   ix_market_prices_price_date        "latest price date before D".
-- Safe to re-run after a failure: a failed CONCURRENTLY build leaves an INVALID
-- index behind, so each build is preceded by DROP INDEX CONCURRENTLY IF EXISTS
-- (nothing valid can exist there yet: 0005 has not run).
-- statement_timeout is generous because an index build on a large table is
-- long but harmless; lock_timeout is short because waiting for a lock queues
-- every other session behind us.
-- depends: 0003_idempotency_precheck
-- transactional: false

SET lock_timeout = '5s';
SET statement_timeout = '2h';

-- Re-check: duplicates may have been written since 0003 (a legacy batch still
-- running). Same message as 0003; nothing is changed when it fires.
DO $precheck$
DECLARE
    n_groups bigint;
BEGIN
    SELECT count(*) INTO n_groups FROM (
        SELECT 1 FROM portfolio_snapshots
        GROUP BY portfolio_id, snapshot_date HAVING count(*) > 1
    ) AS dup;
    IF n_groups > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = 'duplicate snapshots: ' || n_groups
                || ' (portfolio_id, snapshot_date) groups have more than one row',
            DETAIL = 'uq_portfolio_snapshot_date cannot be built while duplicates exist. Nothing was changed.',
            HINT = 'Stop the legacy batch, run `pnl dedupe`, then `pnl migrate` again.';
    END IF;
END
$precheck$;

DROP INDEX CONCURRENTLY IF EXISTS uq_portfolio_snapshot_date;
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_portfolio_snapshot_date
    ON portfolio_snapshots (portfolio_id, snapshot_date);

DROP INDEX CONCURRENTLY IF EXISTS ix_portfolio_snapshots_incomplete;
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_portfolio_snapshots_incomplete
    ON portfolio_snapshots (portfolio_id, snapshot_date) WHERE NOT is_complete;

DROP INDEX CONCURRENTLY IF EXISTS ix_market_prices_price_date;
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_market_prices_price_date
    ON market_prices (price_date);
