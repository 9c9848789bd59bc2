-- generate: synthetic benchmark data, set-based and deterministic.
-- $1 portfolios (int)  $2 symbols (int)  $3 the snapshot date D (date);
-- prices exist for D - 1 and D. Positions and flows: bench/generate_positions.sql.
-- Returns nothing.
WITH pf AS (
    INSERT INTO portfolios (id, name, equity_balance)
    SELECT g, 'bench-' || g, 100000 + (g % 1000) * 100
      FROM generate_series(1, $1::int) AS g
    RETURNING id
), px AS (
    INSERT INTO market_prices (symbol, price_date, close_price)
    SELECT 'S' || s, d.day,
           round((10 + (s * 7919 % 49000) / 100.0)
                 * CASE WHEN d.day = $3::date THEN 1 + ((s * 31 % 201) - 100) / 2000.0 ELSE 1 END, 2)
      FROM generate_series(1, $2::int) AS s
     CROSS JOIN (VALUES ($3::date - 1), ($3::date)) AS d(day)
    RETURNING 1
)
SELECT (SELECT count(*) FROM pf), (SELECT count(*) FROM px);
