-- list_holders: who holds what a run could not finish: the other runs' live
-- unfinished claims on these portfolios, up to the run's last date, with
-- when their leases expire (exit 75 names them; --wait waits for them).
--
-- $1 run id (bigint: its own claims are not listed)   $2 last date (date)
-- $3 portfolio ids (bigint[])
-- Returns: batch_run_id, claims (bigint), first_date, last_date,
--          lease_expires_at (the latest of its claims), host, pid (of the run, when known)
SELECT s.batch_run_id, count(*) AS claims, min(s.snapshot_date) AS first_date,
       max(s.snapshot_date) AS last_date, max(s.lease_expires_at) AS lease_expires_at,
       r.host, r.pid
  FROM portfolio_snapshots AS s
  LEFT JOIN batch_runs AS r ON r.id = s.batch_run_id
 WHERE s.portfolio_id = ANY($3::bigint[])
   AND s.snapshot_date <= $2::date
   AND NOT s.is_complete
   AND s.batch_run_id IS DISTINCT FROM $1::bigint
   AND s.lease_expires_at >= now()
 GROUP BY s.batch_run_id, r.host, r.pid
 ORDER BY s.batch_run_id;
