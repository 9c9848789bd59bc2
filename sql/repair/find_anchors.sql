-- find_anchors: for each portfolio to repair from a date, the anchor: its latest
-- complete snapshot before that date (with a NAV), and how many snapshots on or
-- after the date the replay will recompute. A repair refuses a portfolio with
-- no anchor: its starting equity cannot be trusted (legacy equity_balance is
-- exactly what the old bug inflated).
--
-- $1 portfolio ids (bigint[])   $2 repair-from dates (date[], aligned with $1)
-- Returns: portfolio_id, from_date, anchor_date, anchor_nav, to_replay (bigint),
--          known (bool: the portfolio exists)
SELECT t.portfolio_id, t.from_date, a.snapshot_date AS anchor_date, a.net_asset_value AS anchor_nav,
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
 ORDER BY t.portfolio_id;
