-- list_price_dates: the dates in [$1, $2] that have at least one close price,
-- in order: the trading days a backfill runs.
--
-- $1 first date (date)   $2 last date (date)
-- Returns: price_date (date), ascending
SELECT DISTINCT mp.price_date
  FROM market_prices AS mp
 WHERE mp.price_date BETWEEN $1::date AND $2::date
 ORDER BY mp.price_date;
