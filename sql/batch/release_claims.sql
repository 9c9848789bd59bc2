-- release_claims: give back claims this run holds but will not finish
-- (its chunk failed, or the run is stopping), so that a later run can take them
-- at once instead of waiting for the lease to expire. Only this run's
-- unfinished rows are deleted: complete snapshots and other runs' claims are
-- never touched.
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- Returns one row per released claim: portfolio_id
DELETE FROM portfolio_snapshots AS s
 WHERE s.batch_run_id = $1::bigint
   AND s.snapshot_date = $2::date
   AND s.portfolio_id = ANY($3::bigint[])
   AND NOT s.is_complete
RETURNING s.portfolio_id;
