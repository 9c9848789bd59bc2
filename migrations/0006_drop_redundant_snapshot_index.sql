-- 0006_drop_redundant_snapshot_index: drop the legacy non-unique index on
-- portfolio_snapshots (portfolio_id, snapshot_date). The unique index behind
-- uq_portfolio_snapshot_date (0004/0005) has the same columns and serves every
-- lookup; the old one only costs a second index write on every claim.
-- CONCURRENTLY: does not block reads or writes, so not in a transaction.
-- depends: 0005_unique_snapshot_constraint
-- transactional: false

SET lock_timeout = '5s';
SET statement_timeout = '60s';

DROP INDEX CONCURRENTLY IF EXISTS ix_portfolio_snapshots_portfolio_date;
