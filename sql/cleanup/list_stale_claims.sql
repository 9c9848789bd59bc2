-- list_stale_claims: unfinished claims (is_complete = false) claimed longer
-- ago than $1, optionally only for one date: the plan `pnl cleanup` shows and,
-- once confirmed, deletes exactly (cleanup/delete_listed_claims.sql). Times are
-- timestamptz and compared in the database (now()), so the client's time zone
-- and clock do not matter.
--
-- $1 older than (interval)   $2 only this snapshot date (date; NULL for all)
-- Returns: snapshot_id, portfolio_id, snapshot_date, batch_run_id, claimed_at,
--          lease_expires_at, lease_expired (bool)
SELECT s.id AS snapshot_id, s.portfolio_id, s.snapshot_date, s.batch_run_id, s.claimed_at, s.lease_expires_at,
       (s.lease_expires_at < now()) AS lease_expired
  FROM portfolio_snapshots AS s
 WHERE NOT s.is_complete
   AND s.claimed_at < now() - $1::interval
   AND ($2::date IS NULL OR s.snapshot_date = $2::date)
 ORDER BY s.snapshot_date, s.portfolio_id;
