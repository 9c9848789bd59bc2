-- generate_prices: closes for every symbol on each given date (history dates
-- before D, catch-up dates after it), set-based and deterministic: the
-- symbol's base price of bench/generate.sql moved by up to +-5% per date.
-- Dates that already have a close for a symbol keep it (D - 1 and D come
-- from bench/generate.sql).
-- $1 the dates (date[])  $2 symbols (int)
-- Returns nothing.
INSERT INTO market_prices (symbol, price_date, close_price)
SELECT 'S' || s, d.day,
       round((10 + (s * 7919 % 49000) / 100.0) * (1 + ((s * 31 + d.j * 97) % 201 - 100) / 2000.0), 2)
  FROM generate_series(1, $2::int) AS s
 CROSS JOIN unnest($1::date[]) WITH ORDINALITY AS d(day, j)
    ON CONFLICT ON CONSTRAINT pk_market_prices DO NOTHING;
