-- finalize_claimed: compute and finalize the snapshots this run has claimed,
-- for one chunk of portfolios, in one statement (so in one transaction:
-- snapshot values, is_complete and equity change together or not at all).
-- Run it right after batch/lock_portfolios.sql, in the same transaction, so
-- that it sees every earlier date of these portfolios finished or not.
--
-- Rules, for portfolio p on date D ($2):
--   B       = date of p's latest complete snapshot before D (with a NAV);
--             if none, the latest price date before D (any symbol).
--   alive   = positions with entry_date <= D and (exit_date is null or > B).
--   pnl     = sum of quantity * multiplier * (end - start), where
--             start = entry_price if entry_date > B, else the latest close <= B
--                     (entry_price if the symbol has no close <= B),
--             end   = exit_price if exit_date <= D, else the latest close <= D.
--   opening = previous complete snapshot's NAV, else portfolios.equity_balance.
--   flow    = sum of capital_flows in (B, D].
--   NAV     = opening + round(pnl, 4) + flow   (set, never added to a balance)
--   return  = pnl / opening (NULL when opening is 0); cumulative = prev + pnl.
--   exposure from positions open at D (exit_date null or > D) at the latest
--   close <= D: long_value = sum of positive values, short_value = sum of
--   negative values (a negative number), gross = long - short, net = long + short.
--
-- A portfolio fails, and its claim is deleted (released), when
--   'missing_price'      an alive position needs a close <= D and has none
--                        (detail: the symbols);
--   'later_snapshot'     it has a complete snapshot after D (detail: that date):
--                        finishing D now would fork its equity chain;
--   'earlier_unfinished' an earlier date is claimed but unfinished (detail:
--                        that date): D's opening equity is not known yet.
--
-- Fencing: rows are written only WHERE batch_run_id = $1 AND NOT is_complete.
-- A run whose claim was taken over (its lease expired) writes nothing; its
-- portfolios are neither in finalized_ids nor in failed_ids: they are "lost".
-- Equity is SET to the new NAV.
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 claimed portfolio ids (bigint[])
-- Returns one row: finalized_ids bigint[], failed_ids bigint[],
--                  failed_kinds text[], failed_details text[] (aligned by position)
WITH claimed AS (
    SELECT s.portfolio_id
      FROM portfolio_snapshots AS s
     WHERE s.snapshot_date = $2::date
       AND s.portfolio_id = ANY($3::bigint[])
       AND s.batch_run_id = $1::bigint
       AND NOT s.is_complete
),
out_of_order AS (
    SELECT c.portfolio_id,
           CASE WHEN later.d IS NOT NULL THEN 'later_snapshot' ELSE 'earlier_unfinished' END AS kind,
           COALESCE(later.d, earlier.d)::text AS detail
      FROM claimed AS c
      LEFT JOIN LATERAL (
            SELECT min(ps.snapshot_date) AS d FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = c.portfolio_id AND ps.snapshot_date > $2::date AND ps.is_complete
           ) AS later ON true
      LEFT JOIN LATERAL (
            SELECT max(ps.snapshot_date) AS d FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = c.portfolio_id AND ps.snapshot_date < $2::date AND NOT ps.is_complete
           ) AS earlier ON true
     WHERE later.d IS NOT NULL OR earlier.d IS NOT NULL
),
base AS (
    SELECT c.portfolio_id,
           COALESCE(prev.snapshot_date,
                    (SELECT max(mp.price_date) FROM market_prices AS mp
                      WHERE mp.price_date < $2::date)) AS b,
           COALESCE(prev.net_asset_value, pf.equity_balance) AS opening_equity,
           COALESCE(prev.cumulative_pnl, 0)                  AS prev_cumulative
      FROM claimed AS c
      JOIN portfolios AS pf ON pf.id = c.portfolio_id
      LEFT JOIN LATERAL (
            SELECT ps.snapshot_date, ps.net_asset_value, ps.cumulative_pnl
              FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = c.portfolio_id
               AND ps.snapshot_date < $2::date
               AND ps.is_complete
               AND ps.net_asset_value IS NOT NULL
             ORDER BY ps.snapshot_date DESC
             LIMIT 1) AS prev ON true
),
alive AS (
    SELECT b.portfolio_id, b.b, p.symbol,
           p.quantity * p.multiplier AS units,
           p.entry_date, p.entry_price, p.exit_date, p.exit_price
      FROM base AS b
      JOIN positions AS p ON p.portfolio_id = b.portfolio_id
     WHERE p.entry_date <= $2::date
       AND (p.exit_date IS NULL OR b.b IS NULL OR p.exit_date > b.b)
),
start_close AS (
    SELECT n.symbol, n.b, px.close_price
      FROM (SELECT DISTINCT a.symbol, a.b FROM alive AS a
             WHERE a.b IS NOT NULL AND a.entry_date <= a.b) AS n
      JOIN LATERAL (
            SELECT mp.close_price FROM market_prices AS mp
             WHERE mp.symbol = n.symbol AND mp.price_date <= n.b
             ORDER BY mp.price_date DESC LIMIT 1) AS px ON true
),
end_close AS (
    SELECT n.symbol, px.close_price
      FROM (SELECT DISTINCT a.symbol FROM alive AS a
             WHERE a.exit_date IS NULL OR a.exit_date > $2::date) AS n
      JOIN LATERAL (
            SELECT mp.close_price FROM market_prices AS mp
             WHERE mp.symbol = n.symbol AND mp.price_date <= $2::date
             ORDER BY mp.price_date DESC LIMIT 1) AS px ON true
),
valued AS (
    SELECT a.portfolio_id, a.symbol, a.units,
           CASE WHEN a.b IS NULL OR a.entry_date > a.b THEN a.entry_price
                ELSE COALESCE(sc.close_price, a.entry_price) END          AS start_price,
           CASE WHEN a.exit_date <= $2::date THEN a.exit_price
                ELSE ec.close_price END                                   AS end_price,
           (a.exit_date IS NULL OR a.exit_date > $2::date)                AS open_at_d
      FROM alive AS a
      LEFT JOIN start_close AS sc ON sc.symbol = a.symbol AND sc.b = a.b
      LEFT JOIN end_close AS ec ON ec.symbol = a.symbol
),
per_portfolio AS (
    SELECT v.portfolio_id,
           sum(v.units * (v.end_price - v.start_price))                    AS pnl,
           sum(v.units * v.end_price) FILTER (WHERE v.open_at_d AND v.units > 0) AS long_value,
           sum(v.units * v.end_price) FILTER (WHERE v.open_at_d AND v.units < 0) AS short_value,
           count(*) FILTER (WHERE v.open_at_d)                             AS num_positions,
           string_agg(DISTINCT v.symbol, ',' ORDER BY v.symbol)
               FILTER (WHERE v.end_price IS NULL)                          AS missing_symbols
      FROM valued AS v
     GROUP BY v.portfolio_id
),
flows AS (
    SELECT b.portfolio_id, sum(f.amount) AS amount
      FROM base AS b
      JOIN capital_flows AS f
        ON f.portfolio_id = b.portfolio_id
       AND f.flow_date <= $2::date
       AND (b.b IS NULL OR f.flow_date > b.b)
     GROUP BY b.portfolio_id
),
computed AS (
    SELECT b.portfolio_id,
           b.opening_equity,
           round(COALESCE(pp.pnl, 0), 4)                   AS daily_pnl,
           round(COALESCE(fl.amount, 0), 4)                AS capital_flow,
           b.prev_cumulative,
           round(COALESCE(pp.long_value, 0), 4)            AS long_value,
           round(COALESCE(pp.short_value, 0), 4)           AS short_value,
           COALESCE(pp.num_positions, 0)                   AS num_positions,
           COALESCE(oo.kind, CASE WHEN pp.missing_symbols IS NOT NULL THEN 'missing_price' END) AS failure_kind,
           COALESCE(oo.detail, pp.missing_symbols)         AS failure_detail
      FROM base AS b
      LEFT JOIN per_portfolio AS pp ON pp.portfolio_id = b.portfolio_id
      LEFT JOIN flows AS fl ON fl.portfolio_id = b.portfolio_id
      LEFT JOIN out_of_order AS oo ON oo.portfolio_id = b.portfolio_id
),
finalized AS (
    UPDATE portfolio_snapshots AS s
       SET opening_equity  = c.opening_equity,
           capital_flow    = c.capital_flow,
           daily_pnl       = c.daily_pnl,
           net_asset_value = c.opening_equity + c.daily_pnl + c.capital_flow,
           daily_return    = CASE WHEN c.opening_equity = 0 THEN NULL
                                  ELSE round(c.daily_pnl / c.opening_equity, 10) END,
           cumulative_pnl  = c.prev_cumulative + c.daily_pnl,
           long_value      = c.long_value,
           short_value     = c.short_value,
           gross_exposure  = c.long_value - c.short_value,
           net_exposure    = c.long_value + c.short_value,
           num_positions   = c.num_positions,
           is_complete     = true,
           completed_at    = now(),
           lease_expires_at = NULL
      FROM computed AS c
     WHERE s.portfolio_id = c.portfolio_id
       AND s.snapshot_date = $2::date
       AND s.batch_run_id = $1::bigint
       AND NOT s.is_complete
       AND c.failure_kind IS NULL
    RETURNING s.portfolio_id, s.net_asset_value
),
equity AS (
    UPDATE portfolios AS pf
       SET equity_balance = f.net_asset_value
      FROM finalized AS f
     WHERE pf.id = f.portfolio_id
    RETURNING pf.id
),
released AS (
    DELETE FROM portfolio_snapshots AS s
     USING computed AS c
     WHERE s.portfolio_id = c.portfolio_id
       AND s.snapshot_date = $2::date
       AND s.batch_run_id = $1::bigint
       AND NOT s.is_complete
       AND c.failure_kind IS NOT NULL
    RETURNING s.portfolio_id
)
SELECT ARRAY(SELECT f.portfolio_id FROM finalized AS f ORDER BY 1)::bigint[] AS finalized_ids,
       ARRAY(SELECT r.portfolio_id FROM released AS r ORDER BY 1)::bigint[]  AS failed_ids,
       ARRAY(SELECT c.failure_kind FROM released AS r
               JOIN computed AS c ON c.portfolio_id = r.portfolio_id
              ORDER BY r.portfolio_id)::text[]                                AS failed_kinds,
       ARRAY(SELECT c.failure_detail FROM released AS r
               JOIN computed AS c ON c.portfolio_id = r.portfolio_id
              ORDER BY r.portfolio_id)::text[]                                AS failed_details,
       (SELECT count(*) FROM equity)                                          AS equity_updated;
