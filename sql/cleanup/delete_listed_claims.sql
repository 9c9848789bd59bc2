-- delete_listed_claims: delete exactly the claims a cleanup plan listed
-- (cleanup/list_stale_claims.sql), each only if it is still the same claim:
-- the same row, still unfinished, still owned by the same run. A claim that
-- was finished, or taken over by another run, since it was listed is left
-- alone (that run is alive). Never touches a complete snapshot. Deleting the
-- claim of a run that is in fact still alive is safe: its finalize is fenced
-- on batch_run_id, finds no row, writes nothing, and reports the portfolio
-- as lost.
--
-- $1 snapshot ids (bigint[])   $2 their batch_run_id when listed (bigint[], aligned with $1)
-- Returns one row per deleted claim: snapshot_id, portfolio_id, snapshot_date, batch_run_id
DELETE FROM portfolio_snapshots AS s
 USING unnest($1::bigint[], $2::bigint[]) AS l(snapshot_id, batch_run_id)
 WHERE s.id = l.snapshot_id
   AND s.batch_run_id IS NOT DISTINCT FROM l.batch_run_id
   AND NOT s.is_complete
RETURNING s.id AS snapshot_id, s.portfolio_id, s.snapshot_date, s.batch_run_id;
