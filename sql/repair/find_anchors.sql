-- find_anchors: for each portfolio to repair from a date, what its replay
-- starts from, and how many snapshots on or after the date it recomputes.
--   anchor: its latest complete snapshot before the date (with a NAV): the
--           replay trusts that NAV;
--   else:   its earliest complete snapshot on or after the date: the replay
--           starts from that snapshot's opening_equity (a legacy row without
--           one: NAV - daily_pnl - capital flow, where the flow is the row's
--           capital_flow, else the capital_flows in (the price date before it,
--           its date]): the equity it opened with, before any P&L of the range.
-- (Legacy equity_balance is never trusted: it is exactly what the old bug inflated.)
--
-- $1 portfolio ids (bigint[])   $2 repair-from dates (date[], aligned with $1)
-- Returns: portfolio_id, from_date, anchor_date, anchor_nav, first_date,
--          first_opening (numeric; NULL when not derivable), first_opening_derived (bool),
--          to_replay (bigint), known (bool: the portfolio exists)
SELECT t.portfolio_id, t.from_date, a.snapshot_date AS anchor_date, a.net_asset_value AS anchor_nav,
       f.snapshot_date AS first_date,
       COALESCE(f.opening_equity,
                f.net_asset_value - f.daily_pnl - COALESCE(f.capital_flow, round(COALESCE(
                    (SELECT sum(cf.amount) FROM capital_flows AS cf
                      WHERE cf.portfolio_id = t.portfolio_id
                        AND cf.flow_date <= f.snapshot_date
                        AND cf.flow_date > COALESCE((SELECT max(mp.price_date) FROM market_prices AS mp
                                                      WHERE mp.price_date < f.snapshot_date), '-infinity')),
                    0), 4))) AS first_opening,
       (f.opening_equity IS NULL) AS first_opening_derived,
       (SELECT count(*) FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = t.portfolio_id AND s.snapshot_date >= t.from_date) AS to_replay,
       EXISTS (SELECT 1 FROM portfolios AS p WHERE p.id = t.portfolio_id) AS known
  FROM unnest($1::bigint[], $2::date[]) AS t(portfolio_id, from_date)
  LEFT JOIN LATERAL (
        SELECT s.snapshot_date, s.net_asset_value
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = t.portfolio_id
           AND s.snapshot_date < t.from_date
           AND s.is_complete
           AND s.net_asset_value IS NOT NULL
         ORDER BY s.snapshot_date DESC
         LIMIT 1) AS a ON true
  LEFT JOIN LATERAL (
        SELECT s.snapshot_date, s.opening_equity, s.net_asset_value, s.daily_pnl, s.capital_flow
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = t.portfolio_id
           AND s.snapshot_date >= t.from_date
           AND s.is_complete
         ORDER BY s.snapshot_date
         LIMIT 1) AS f ON true
 ORDER BY t.portfolio_id;
