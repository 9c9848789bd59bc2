-- delete_stale_claims: delete unfinished claims claimed longer ago than $1
-- (optionally only for one date), so their portfolios can be claimed at once.
-- Never touches a complete snapshot. Deleting the claim of a run that is in
-- fact still alive is safe: its finalize is fenced on batch_run_id, finds no
-- row, writes nothing, and reports the portfolio as lost.
--
-- $1 older than (interval)   $2 only this snapshot date (date; NULL for all)
-- Returns one row per deleted claim: portfolio_id, snapshot_date, batch_run_id
DELETE FROM portfolio_snapshots AS s
 WHERE NOT s.is_complete
   AND s.claimed_at < now() - $1::interval
   AND ($2::date IS NULL OR s.snapshot_date = $2::date)
RETURNING s.portfolio_id, s.snapshot_date, s.batch_run_id;
