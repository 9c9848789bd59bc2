-- take_over_expired_claims: adopt claims whose run died (lease expired).
--
-- One atomic UPDATE ... RETURNING over rows locked FOR UPDATE SKIP LOCKED:
-- two runs can never both take the same claim. A row another transaction has
-- locked (a second run taking it over right now, or the owner's finalize or
-- heartbeat writing it) is skipped at once, never waited for: this run
-- leaves it to that transaction. The new batch_run_id is the fencing token:
-- the dead (or merely slow) run can no longer finalize the slot.
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- $4 lease (interval)
-- Returns one row per claim taken over: portfolio_id, previous_run_id
WITH expired AS (
    SELECT s.id, s.batch_run_id AS previous_run_id
      FROM portfolio_snapshots AS s
     WHERE s.snapshot_date = $2::date
       AND s.portfolio_id = ANY($3::bigint[])
       AND NOT s.is_complete
       AND s.lease_expires_at < now()
     ORDER BY s.portfolio_id
       FOR UPDATE SKIP LOCKED
)
UPDATE portfolio_snapshots AS s
   SET batch_run_id = $1::bigint,
       claimed_at = now(),
       lease_expires_at = now() + $4::interval
  FROM expired AS e
 WHERE s.id = e.id
RETURNING s.portfolio_id, e.previous_run_id;
