-- 0010_positions_covering_index rollback: rebuild ix_positions_portfolio,
-- then drop the covering index, both CONCURRENTLY (no write lock).
-- Idempotent and safe at any time: after a failure part-way through the
-- migration, yoyo runs some of these statements to undo it.
SET lock_timeout = '5s';
SET statement_timeout = '2h';

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_positions_portfolio ON positions (portfolio_id);
DROP INDEX CONCURRENTLY IF EXISTS ix_positions_portfolio_covering;
