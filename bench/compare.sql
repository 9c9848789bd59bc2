-- compare: how many portfolios' snapshots written by the batch differ from the
-- floor's in any computed column (0 = the batch wrote exactly the floor's
-- numbers), and how many are missing on either side. $1 D (date).
-- Returns one row: differing (bigint), missing (bigint), batch_rows, floor_rows
SELECT count(*) FILTER (WHERE b.id IS NOT NULL AND f.id IS NOT NULL AND
           (b.opening_equity, b.daily_pnl, b.capital_flow, b.net_asset_value, b.daily_return, b.cumulative_pnl,
            b.long_value, b.short_value, b.gross_exposure, b.net_exposure, b.num_positions, b.is_complete)
           IS DISTINCT FROM
           (f.opening_equity, f.daily_pnl, f.capital_flow, f.net_asset_value, f.daily_return, f.cumulative_pnl,
            f.long_value, f.short_value, f.gross_exposure, f.net_exposure, f.num_positions, f.is_complete))
           AS differing,
       count(*) FILTER (WHERE b.id IS NULL OR f.id IS NULL) AS missing,
       count(b.id) AS batch_rows,
       count(f.id) AS floor_rows
  FROM (SELECT * FROM portfolio_snapshots WHERE snapshot_date = $1::date) AS b
  FULL JOIN (SELECT * FROM floor_snapshots WHERE snapshot_date = $1::date) AS f
    ON f.portfolio_id = b.portfolio_id;
