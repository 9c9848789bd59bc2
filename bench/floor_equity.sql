-- floor_equity: the floor's second statement: set the equity of every
-- portfolio with an id in [$2, $3] to the NAV the floor computed for D.
-- $1 D (date)  $2 first portfolio id (bigint)  $3 last portfolio id (bigint). Returns nothing.
UPDATE portfolios AS p
   SET equity_balance = f.net_asset_value
  FROM floor_snapshots AS f
 WHERE f.portfolio_id = p.id AND f.snapshot_date = $1::date
   AND p.id BETWEEN $2::bigint AND $3::bigint AND f.portfolio_id BETWEEN $2::bigint AND $3::bigint;
