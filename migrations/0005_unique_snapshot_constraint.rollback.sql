-- 0005_unique_snapshot_constraint rollback: drops the constraint and puts back
-- the plain unique index that 0004 built (dropping a constraint drops its index).
-- The rebuild is not CONCURRENTLY (it runs in this migration's transaction):
-- it blocks writes to portfolio_snapshots while it builds. Roll back in a quiet
-- window; on a huge table roll back to 0003 instead, which skips the rebuild.
SET lock_timeout = '5s';
SET statement_timeout = '2h';

-- Dropping the constraint is the point of this rollback.
-- squawk-ignore ban-drop-constraint
ALTER TABLE portfolio_snapshots DROP CONSTRAINT IF EXISTS uq_portfolio_snapshot_date;
-- A rollback-only path, in a transaction by design (see the header).
-- squawk-ignore require-concurrent-index-creation
CREATE UNIQUE INDEX IF NOT EXISTS uq_portfolio_snapshot_date
    ON portfolio_snapshots (portfolio_id, snapshot_date);
