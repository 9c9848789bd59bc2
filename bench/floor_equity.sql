-- floor_equity: the floor's second statement: set every portfolio's equity to
-- the NAV the floor computed. $1 D (date). Returns nothing.
UPDATE portfolios AS p
   SET equity_balance = f.net_asset_value
  FROM floor_snapshots AS f
 WHERE f.portfolio_id = p.id AND f.snapshot_date = $1::date;
