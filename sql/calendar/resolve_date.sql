-- resolve_date: a date the user asked for, on the DATABASE's clock, and where
-- it sits in the price calendar (a price date is a date with at least one
-- close in market_prices; dates after today never count). Every lookup is a
-- probe of ix_market_prices_price_date.
--
-- $1 what was asked (text): 'date' (then $2), 'today', 'yesterday' or
--    'latest' (the latest price date not after today)
-- $2 the date, when $1 = 'date' (date; NULL otherwise)
-- Returns one row: day (date; NULL for 'latest' with no price date at all),
--   today (date), is_price_date (bool), previous_price_date (the latest
--   price date before day, not after today), next_price_date (the first price
--   date after day, not after today), latest_price_date (not after today)
WITH clock AS (
    SELECT current_date AS today
),
asked AS (
    SELECT c.today,
           CASE $1::text
                WHEN 'today' THEN c.today
                WHEN 'yesterday' THEN c.today - 1
                WHEN 'latest' THEN (SELECT max(mp.price_date) FROM market_prices AS mp
                                     WHERE mp.price_date <= c.today)
                ELSE $2::date END AS day
      FROM clock AS c
)
SELECT a.day, a.today,
       EXISTS (SELECT 1 FROM market_prices AS mp WHERE mp.price_date = a.day) AS is_price_date,
       (SELECT max(mp.price_date) FROM market_prices AS mp
         WHERE mp.price_date < a.day AND mp.price_date <= a.today)              AS previous_price_date,
       (SELECT min(mp.price_date) FROM market_prices AS mp
         WHERE mp.price_date > a.day AND mp.price_date <= a.today)              AS next_price_date,
       (SELECT max(mp.price_date) FROM market_prices AS mp
         WHERE mp.price_date <= a.today)                                        AS latest_price_date
  FROM asked AS a;
