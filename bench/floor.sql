-- floor: the unsafe one-statement floor. Computes the snapshot for D ($1) of
-- every portfolio with an id in [$2, $3], with the same rules as
-- sql/batch/finalize_claimed.sql (its valuation marks are the latest closes
-- here: the bench loads every price before it runs, so a mark, fixed from
-- market_prices by the first run of a date, is exactly that close), but for
-- all of them at once, with plain
-- hash joins, no claim, no fencing, no audit, and writes them into
-- floor_snapshots (a copy of portfolio_snapshots with the same indexes).
-- bench/floor_equity.sql then sets equity from it. Nothing that writes the
-- same rows can be much faster. The single-connection floor passes the whole
-- id range; the parallel floor runs one id range per connection at once.
-- The previous snapshot is one index probe per portfolio (LATERAL ... LIMIT 1),
-- so the floor itself stays flat in history depth (a DISTINCT ON over every
-- earlier snapshot would read the whole history).
-- $1 D (date)  $2 first portfolio id (bigint)  $3 last portfolio id (bigint). Returns nothing.
WITH base AS (
    SELECT pf.id AS portfolio_id,
           COALESCE(prev.snapshot_date, (SELECT max(price_date) FROM market_prices WHERE price_date < $1::date)) AS b,
           COALESCE(prev.net_asset_value, pf.equity_balance) AS opening_equity,
           COALESCE(prev.cumulative_pnl, 0) AS prev_cumulative
      FROM portfolios AS pf
      LEFT JOIN LATERAL (
            SELECT ps.snapshot_date, ps.net_asset_value, ps.cumulative_pnl
              FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = pf.id AND ps.snapshot_date < $1::date
               AND ps.is_complete AND ps.net_asset_value IS NOT NULL
             ORDER BY ps.snapshot_date DESC
             LIMIT 1) AS prev ON true
     WHERE pf.id BETWEEN $2::bigint AND $3::bigint
),
close_d AS (
    SELECT DISTINCT ON (symbol) symbol, close_price FROM market_prices
     WHERE price_date <= $1::date ORDER BY symbol, price_date DESC
),
close_b AS (
    SELECT DISTINCT ON (symbol) symbol, close_price FROM market_prices
     WHERE price_date <= (SELECT max(price_date) FROM market_prices WHERE price_date < $1::date)
     ORDER BY symbol, price_date DESC
),
valued AS (
    SELECT b.portfolio_id, p.quantity * p.multiplier AS units,
           CASE WHEN b.b IS NULL OR p.entry_date > b.b THEN p.entry_price
                ELSE COALESCE(cb.close_price, p.entry_price) END AS start_price,
           CASE WHEN p.exit_date <= $1::date THEN p.exit_price ELSE cd.close_price END AS end_price,
           (p.exit_date IS NULL OR p.exit_date > $1::date) AS open_at_d
      FROM base AS b
      JOIN positions AS p ON p.portfolio_id = b.portfolio_id
      LEFT JOIN close_b AS cb ON cb.symbol = p.symbol
      LEFT JOIN close_d AS cd ON cd.symbol = p.symbol
     WHERE p.entry_date <= $1::date AND (p.exit_date IS NULL OR b.b IS NULL OR p.exit_date > b.b)
),
agg AS (
    SELECT v.portfolio_id,
           sum(v.units * (v.end_price - v.start_price)) AS pnl,
           sum(v.units * v.end_price) FILTER (WHERE v.open_at_d AND v.units > 0) AS long_value,
           sum(v.units * v.end_price) FILTER (WHERE v.open_at_d AND v.units < 0) AS short_value,
           count(*) FILTER (WHERE v.open_at_d AND v.units <> 0) AS num_positions
      FROM valued AS v GROUP BY v.portfolio_id
),
flows AS (
    SELECT f.portfolio_id, sum(f.amount) AS amount
      FROM capital_flows AS f JOIN base AS b ON b.portfolio_id = f.portfolio_id
     WHERE f.flow_date <= $1::date AND (b.b IS NULL OR f.flow_date > b.b)
     GROUP BY f.portfolio_id
),
computed AS (
    SELECT b.portfolio_id, b.opening_equity, b.prev_cumulative,
           round(COALESCE(a.pnl, 0), 4) AS daily_pnl,
           round(COALESCE(fl.amount, 0), 4) AS capital_flow,
           round(COALESCE(a.long_value, 0), 4) AS long_value,
           round(COALESCE(a.short_value, 0), 4) AS short_value,
           COALESCE(a.num_positions, 0) AS num_positions
      FROM base AS b LEFT JOIN agg AS a USING (portfolio_id) LEFT JOIN flows AS fl USING (portfolio_id)
)
INSERT INTO floor_snapshots
       (portfolio_id, snapshot_date, is_complete, opening_equity, daily_pnl, capital_flow, net_asset_value,
        daily_return, cumulative_pnl, long_value, short_value, gross_exposure, net_exposure, num_positions,
        completed_at)
SELECT c.portfolio_id, $1::date, true, c.opening_equity, c.daily_pnl, c.capital_flow,
       c.opening_equity + c.daily_pnl + c.capital_flow,
       CASE WHEN c.opening_equity = 0 THEN NULL ELSE round(c.daily_pnl / c.opening_equity, 10) END,
       c.prev_cumulative + c.daily_pnl, c.long_value, c.short_value,
       c.long_value - c.short_value, c.long_value + c.short_value, c.num_positions, now()
  FROM computed AS c;
