-- list_repaired_snapshots: the snapshots a repair's run wrote (new values).
--
-- $1 batch run id used as the repair's claim token (bigint)
-- Returns: portfolio_id, snapshot_date, net_asset_value, is_complete
SELECT s.portfolio_id, s.snapshot_date, s.net_asset_value, s.is_complete
  FROM portfolio_snapshots AS s
 WHERE s.batch_run_id = $1::bigint
 ORDER BY s.portfolio_id, s.snapshot_date;
