-- renew_leases: extend the lease of claims this run still holds and has not
-- finished, and tell which those are. Fenced like finalize: a claim another
-- run has taken over is not renewed and does not come back (it is lost).
--
-- $1 run id (bigint)   $2 portfolio ids (bigint[])   $3 from dates (date[], aligned with $2)
-- $4 lease (interval)
-- Returns one row per claim still held (on or after each portfolio's date):
--   portfolio_id, snapshot_date
UPDATE portfolio_snapshots AS s
   SET lease_expires_at = now() + $4::interval
  FROM unnest($2::bigint[], $3::date[]) AS r(portfolio_id, from_date)
 WHERE s.portfolio_id = r.portfolio_id
   AND s.snapshot_date >= r.from_date
   AND s.batch_run_id = $1::bigint
   AND NOT s.is_complete
RETURNING s.portfolio_id, s.snapshot_date;
