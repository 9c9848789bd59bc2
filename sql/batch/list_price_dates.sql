-- list_price_dates: the price dates in [$1, $2] (dates with at least one
-- close), in order: the calendar a backfill reports on. A loose index scan of
-- ix_market_prices_price_date: one probe per date, however many symbols.
--
-- $1 first date (date)   $2 last date (date)
-- Returns: price_date (date), ascending
WITH RECURSIVE calendar(d) AS (
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date >= $1::date AND mp.price_date <= $2::date)
    UNION ALL
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > k.d AND mp.price_date <= $2::date)
      FROM calendar AS k
     WHERE k.d IS NOT NULL
)
SELECT k.d AS price_date
  FROM calendar AS k
 WHERE k.d IS NOT NULL
 ORDER BY k.d;
