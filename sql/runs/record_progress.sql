-- record_progress: store a running batch's counts and heartbeat after each
-- chunk, so `pnl status` shows live progress and a stale run is visible.
--
-- $1 run id   $2 processed   $3 skipped   $4 failed   $5 reclaimed   $6 lost
-- Returns nothing.
UPDATE batch_runs
   SET processed = $2::bigint, skipped = $3::bigint, failed = $4::bigint,
       reclaimed = $5::bigint, lost = $6::bigint, heartbeat_at = now()
 WHERE id = $1::bigint;
