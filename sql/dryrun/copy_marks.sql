-- copy_marks: fill a repair dry run's copy of valuation_marks with the marks
-- its replay can read: every mark on or after the latest price date before
-- $1 (the earliest anchor: a replay's first start price is that date's mark).
-- Run it after dryrun/copy_portfolios, before the copies shadow the tables.
--
-- $1 the earliest date the replay starts from (date)
-- Returns nothing.
INSERT INTO pnl_dry_run_valuation_marks
SELECT vm.*
  FROM valuation_marks AS vm
 WHERE vm.mark_date >= COALESCE((SELECT max(mp.price_date) FROM market_prices AS mp
                                  WHERE mp.price_date < $1::date), $1::date);
