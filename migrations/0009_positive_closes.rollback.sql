-- 0009_positive_closes rollback: drops ck_market_prices_close_positive (closes
-- <= 0 can be loaded again; the batch still fails the portfolios holding such
-- a symbol with `bad_price`). Loses nothing. Safe to run again.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- Removing the constraint this migration added is the point of the rollback.
-- squawk-ignore ban-drop-constraint
ALTER TABLE market_prices DROP CONSTRAINT IF EXISTS ck_market_prices_close_positive;
