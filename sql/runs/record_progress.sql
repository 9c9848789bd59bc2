-- record_progress: store a running batch's counts and heartbeat after each
-- chunk (skipped when the last one is younger than 1 s, or a third of the
-- run's lease if that is shorter) and while it waits for held claims, so
-- `pnl status` shows live progress and the next run can tell a live run from
-- a dead one.
--
-- $1 run id   $2 processed   $3 skipped (already done)   $4 failed   $5 reclaimed   $6 lost
-- $7 held   $8 before_chain
-- Returns nothing.
UPDATE batch_runs
   SET processed = $2::bigint, skipped = $3::bigint, failed = $4::bigint,
       reclaimed = $5::bigint, lost = $6::bigint, held = $7::bigint, before_chain = $8::bigint,
       heartbeat_at = now()
 WHERE id = $1::bigint;
