-- renew_leases: the heartbeat of a chunk in flight: extend the lease of the
-- claims this run still holds and has not finished, while its finalize
-- statement runs (on another connection). Fenced like finalize: a claim
-- another run has taken over is not renewed and does not come back.
--
-- SKIP LOCKED: a row the finalize statement is already writing is locked by
-- it and needs no renewal (no other run can take a locked row over: takeover
-- skips locked rows too). Never waiting on those locks, the heartbeat cannot
-- deadlock with its own run's finalize, and cannot delay it.
--
-- $1 run id (bigint)   $2 portfolio ids (bigint[])   $3 from dates (date[], aligned with $2)
-- $4 lease (interval)
-- Returns one row per claim renewed (on or after each portfolio's date):
--   portfolio_id, snapshot_date
WITH mine AS (
    SELECT s.id
      FROM portfolio_snapshots AS s
      JOIN unnest($2::bigint[], $3::date[]) AS r(portfolio_id, from_date)
        ON s.portfolio_id = r.portfolio_id
       AND s.snapshot_date >= r.from_date
     WHERE s.batch_run_id = $1::bigint
       AND NOT s.is_complete
       FOR UPDATE OF s SKIP LOCKED
)
UPDATE portfolio_snapshots AS s
   SET lease_expires_at = now() + $4::interval
  FROM mine AS m
 WHERE s.id = m.id
RETURNING s.portfolio_id, s.snapshot_date;
