-- unfinished_claims: claimed-but-unfinished snapshot slots (is_complete =
-- false), grouped by date and owning run. Rows whose lease has expired belong
-- to a run that died; the next `pnl batch run` for that date takes them over.
--
-- No parameters.
-- Returns: snapshot_date, batch_run_id, claims (bigint), expired (bigint),
--          oldest_claim (timestamptz), lease_expires_at (latest, timestamptz)
SELECT s.snapshot_date, s.batch_run_id,
       count(*)                                         AS claims,
       count(*) FILTER (WHERE s.lease_expires_at < now()) AS expired,
       min(s.claimed_at)                                AS oldest_claim,
       max(s.lease_expires_at)                          AS lease_expires_at
  FROM portfolio_snapshots AS s
 WHERE NOT s.is_complete
 GROUP BY s.snapshot_date, s.batch_run_id
 ORDER BY s.snapshot_date, s.batch_run_id;
