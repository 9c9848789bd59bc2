-- generate_positions: positions and flows for bench/generate.sql's portfolios
-- (a second statement, so that the portfolios exist for the foreign keys).
-- Long and short (quantity -200..200, never 0), every 10th an option
-- (multiplier 100), every 7th opened on D (entry price, no close before),
-- every 9th closed on D at an exit price; every 10th portfolio has a flow on D.
-- $1 portfolios (int)  $2 positions per portfolio (int)  $3 symbols (int)  $4 D (date)
-- Returns nothing.
WITH pos AS (
    INSERT INTO positions (portfolio_id, symbol, quantity, multiplier, entry_date, entry_price, exit_date, exit_price)
    SELECT p, 'S' || (1 + ((p::bigint * $2::int + k) * 2654435761 % $3::int)),
           CASE WHEN (p * 13 + k * 7) % 401 = 200 THEN 1 ELSE (p * 13 + k * 7) % 401 - 200 END,
           CASE WHEN k % 10 = 0 THEN 100 ELSE 1 END,
           CASE WHEN (p + k) % 7 = 0 THEN $4::date ELSE $4::date - 30 END,
           round(5 + ((p * 17 + k * 3) % 5000) / 100.0, 2),
           CASE WHEN (p + k) % 9 = 0 THEN $4::date END,
           CASE WHEN (p + k) % 9 = 0 THEN round(5 + ((p * 19 + k) % 5000) / 100.0, 2) END
      FROM generate_series(1, $1::int) AS p
     CROSS JOIN generate_series(1, $2::int) AS k
    RETURNING 1
), fl AS (
    INSERT INTO capital_flows (portfolio_id, flow_date, amount)
    SELECT p, $4::date, ((p * 37) % 2001 - 1000) * 10
      FROM generate_series(10, $1::int, 10) AS p
    RETURNING 1
)
SELECT (SELECT count(*) FROM pos), (SELECT count(*) FROM fl);
