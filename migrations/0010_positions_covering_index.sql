-- 0010_positions_covering_index: the batch reads a chunk's positions by an
-- index-only scan instead of one heap page per position.
--   ix_positions_portfolio_covering  (portfolio_id) INCLUDE every column the
--                                    batch's finalize reads; it replaces
--                                    ix_positions_portfolio (same key: it serves
--                                    every lookup the old one did, including the
--                                    foreign key's checks), which is dropped.
-- Measured at 100k portfolios x 20 positions (docs/scaling.md): a chunk's
-- positions cost 20 heap pages per portfolio (positions are stored in the
-- order they were entered, not by portfolio); the index-only scan reads about
-- one leaf page per portfolio. Index-only scans need the visibility map:
-- autovacuum keeps it current; pages changed since the last vacuum are read
-- from the heap as before (no worse than without the index).
-- Locks: CREATE/DROP INDEX CONCURRENTLY block neither reads nor writes, so
-- this is not in a transaction. The build reads the whole table once (about
-- the size of positions again on disk).
-- Safe to re-run after a failure: a failed CONCURRENTLY build leaves an
-- INVALID index, dropped first; the old index is dropped only once the new
-- one is built.
-- Rollback: rebuilds ix_positions_portfolio, then drops the covering index.
-- depends: 0009_positive_closes
-- transactional: false

SET lock_timeout = '5s';
SET statement_timeout = '2h';

DROP INDEX CONCURRENTLY IF EXISTS ix_positions_portfolio_covering;
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_positions_portfolio_covering
    ON positions (portfolio_id)
    INCLUDE (entry_date, exit_date, symbol, quantity, multiplier, entry_price, exit_price);

DROP INDEX CONCURRENTLY IF EXISTS ix_positions_portfolio;
