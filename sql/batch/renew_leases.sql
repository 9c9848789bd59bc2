-- renew_leases: extend the lease of claims this run still holds and has not
-- finished, and tell which those are. Fenced like finalize: a claim another
-- run has taken over is not renewed and does not come back (it is lost).
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- $4 lease (interval)
-- Returns one row per claim still held: portfolio_id
UPDATE portfolio_snapshots AS s
   SET lease_expires_at = now() + $4::interval
 WHERE s.batch_run_id = $1::bigint
   AND s.snapshot_date = $2::date
   AND s.portfolio_id = ANY($3::bigint[])
   AND NOT s.is_complete
RETURNING s.portfolio_id;
