-- 0004_snapshot_indexes_concurrently rollback: drops the three indexes.
-- Every statement is idempotent and safe at any time: after a failure part-way
-- through a non-transactional migration, yoyo runs some of them to undo it.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

DROP INDEX CONCURRENTLY IF EXISTS ix_market_prices_price_date;
DROP INDEX CONCURRENTLY IF EXISTS ix_portfolio_snapshots_incomplete;
DROP INDEX CONCURRENTLY IF EXISTS uq_portfolio_snapshot_date;
