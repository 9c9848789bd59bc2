-- release_claims: give back claims this run holds but will not finish (its
-- chunk failed, an earlier date of the portfolio failed or is held by another
-- run, or the run is stopping), so that a later run can take them at once
-- instead of waiting for the lease to expire. For each portfolio, every one of
-- this run's unfinished claims on or after its date is deleted; complete
-- snapshots and other runs' claims are never touched.
--
-- $1 run id (bigint)   $2 portfolio ids (bigint[])   $3 from dates (date[], aligned with $2)
-- Returns one row per released claim: portfolio_id, snapshot_date
DELETE FROM portfolio_snapshots AS s
 USING unnest($2::bigint[], $3::date[]) AS r(portfolio_id, from_date)
 WHERE s.portfolio_id = r.portfolio_id
   AND s.snapshot_date >= r.from_date
   AND s.batch_run_id = $1::bigint
   AND NOT s.is_complete
RETURNING s.portfolio_id, s.snapshot_date;
