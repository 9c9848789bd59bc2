-- list_live_claims: unfinished claims with a live lease on or after a date,
-- by run: `pnl batch undo` refuses while any exist on the portfolios it would
-- change (that run is computing dates the undo would remove under it).
-- Uses ix_portfolio_snapshots_incomplete (the unfinished claims only).
--
-- $1 from date (date)   $2 only these portfolios (bigint[]; NULL for all)
-- Returns: batch_run_id, claims (bigint), lease_expires_at (the latest), one row per run
SELECT s.batch_run_id, count(*) AS claims, max(s.lease_expires_at) AS lease_expires_at
  FROM portfolio_snapshots AS s
 WHERE NOT s.is_complete
   AND s.snapshot_date >= $1::date
   AND s.lease_expires_at >= now()
   AND ($2::bigint[] IS NULL OR s.portfolio_id = ANY($2::bigint[]))
 GROUP BY s.batch_run_id
 ORDER BY s.batch_run_id;
