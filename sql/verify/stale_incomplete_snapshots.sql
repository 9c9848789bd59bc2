-- stale_incomplete_snapshots: claims (is_complete = false) made more than an
-- hour ago. Needs the idempotency migration (is_complete).
-- A row means: a run claimed that portfolio's date and never finished it. If
-- lease_expired is true the next `pnl batch run --date <snapshot_date>` takes
-- it over; if not, a run may still be working on it (or has a long lease).
-- What to do: run the batch for that date again, or free it at once with
-- `pnl cleanup --older-than 1h --date <snapshot_date>`.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/stale_incomplete_snapshots.sql
SELECT s.portfolio_id, s.snapshot_date, s.batch_run_id, s.claimed_at, s.lease_expires_at,
       (s.lease_expires_at < now()) AS lease_expired
  FROM portfolio_snapshots AS s
 WHERE NOT s.is_complete
   AND s.claimed_at < now() - interval '1 hour'
 ORDER BY s.snapshot_date, s.portfolio_id;
