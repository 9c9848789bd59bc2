-- 0006_drop_redundant_snapshot_index rollback: rebuild the legacy index,
-- CONCURRENTLY (no write lock). Idempotent and safe at any time.
SET lock_timeout = '5s';
SET statement_timeout = '2h';

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_portfolio_snapshots_portfolio_date
    ON portfolio_snapshots (portfolio_id, snapshot_date);
