-- claim_owners: which runs hold unfinished claims for a date right now, and
-- how many each: the demo's evidence that two runs were in flight together.
--
-- $1 the date (date)
-- Returns one row per run: batch_run_id (bigint), claims (bigint)
SELECT s.batch_run_id, count(*) AS claims
  FROM portfolio_snapshots AS s
 WHERE s.snapshot_date = $1::date
   AND NOT s.is_complete
 GROUP BY s.batch_run_id
 ORDER BY s.batch_run_id;
