-- 0005_unique_snapshot_constraint: step 3 of 3 of the idempotency migration.
-- Promotes the index built by 0004 to the constraint uq_portfolio_snapshot_date.
-- USING INDEX makes this a catalog change: no scan, no index build; the ACCESS
-- EXCLUSIVE lock is held for milliseconds, and lock_timeout bounds the wait.
-- From here on the database itself guarantees one row per (portfolio, date):
-- `INSERT ... ON CONFLICT (portfolio_id, snapshot_date) DO NOTHING` is the claim.
-- depends: 0004_snapshot_indexes_concurrently
-- transactional: true

SET lock_timeout = '5s';
SET statement_timeout = '60s';

ALTER TABLE portfolio_snapshots
    ADD CONSTRAINT uq_portfolio_snapshot_date UNIQUE USING INDEX uq_portfolio_snapshot_date;
