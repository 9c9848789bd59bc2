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
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- $4 lease (interval)
-- Returns one row per claim renewed: portfolio_id
WITH mine AS (
    SELECT s.id
      FROM portfolio_snapshots AS s
     WHERE s.batch_run_id = $1::bigint
       AND s.snapshot_date = $2::date
       AND s.portfolio_id = ANY($3::bigint[])
       AND NOT s.is_complete
       FOR UPDATE SKIP LOCKED
)
UPDATE portfolio_snapshots AS s
   SET lease_expires_at = now() + $4::interval
  FROM mine AS m
 WHERE s.id = m.id
RETURNING s.portfolio_id;
