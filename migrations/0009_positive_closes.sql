-- 0009_positive_closes: a close must be positive.
--   1. Refuses, changing nothing, while market_prices holds a close <= 0: the
--      error says how many, names the first ones and how to fix them (like the
--      duplicate pre-check of 0003).
--   2. ADD CONSTRAINT ck_market_prices_close_positive CHECK (close_price > 0)
--      NOT VALID: milliseconds of ACCESS EXCLUSIVE, no scan; from then on every
--      new or changed row is checked.
--   3. VALIDATE CONSTRAINT, as its own statement (its own transaction): a scan
--      under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes (the
--      price loader goes on).
-- Not in a transaction, so each step commits on its own; each is safe to re-run
-- (the constraint is dropped IF EXISTS right before it is added again). If a
-- bad close slips in between the pre-check and step 2, VALIDATE fails: run
-- `pnl migrate` again and the pre-check names it.
-- The batch never values with such a close either way: a held symbol whose
-- close is <= 0 fails its portfolios with `bad_price`.
-- depends: 0008_valuation_marks
-- transactional: false

SET lock_timeout = '5s';
SET statement_timeout = '5min';

DO $precheck$
DECLARE
    n_bad bigint;
    examples text;
BEGIN
    SELECT count(*) INTO n_bad FROM market_prices WHERE close_price <= 0;
    IF n_bad > 0 THEN
        SELECT string_agg(format('%s on %s: %s', b.symbol, b.price_date, b.close_price), '; ')
          INTO examples
          FROM (SELECT symbol, price_date, close_price FROM market_prices
                 WHERE close_price <= 0 ORDER BY price_date, symbol LIMIT 5) AS b;
        RAISE EXCEPTION USING
            ERRCODE = 'check_violation',
            MESSAGE = 'bad prices: ' || n_bad || ' close(s) in market_prices are <= 0, e.g. ' || examples,
            DETAIL = 'ck_market_prices_close_positive (close_price > 0) cannot be added while they exist. Nothing was changed.',
            HINT = 'List them with `SELECT * FROM market_prices WHERE close_price <= 0`; load the real close '
                || '(UPDATE market_prices SET close_price = ... WHERE symbol = ... AND price_date = ...) or delete the row '
                || '(a missing close is carried forward and reported), then `pnl migrate` again.';
    END IF;
END
$precheck$;

-- squawk-ignore ban-drop-constraint
ALTER TABLE market_prices DROP CONSTRAINT IF EXISTS ck_market_prices_close_positive;
ALTER TABLE market_prices ADD CONSTRAINT ck_market_prices_close_positive CHECK (close_price > 0) NOT VALID;
ALTER TABLE market_prices VALIDATE CONSTRAINT ck_market_prices_close_positive;
