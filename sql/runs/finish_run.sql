-- finish_run: record a batch run's outcome and final counts.
--
-- $1 run id   $2 status ('succeeded' | 'partial' | 'failed' | 'interrupted')
-- $3 processed   $4 skipped   $5 failed   $6 reclaimed   $7 lost
-- $8 failures (jsonb array of {portfolio_id, reason}; capped by the caller)
-- Returns nothing.
UPDATE batch_runs
   SET status = $2::text, processed = $3::bigint, skipped = $4::bigint,
       failed = $5::bigint, reclaimed = $6::bigint, lost = $7::bigint,
       failures = $8::jsonb, finished_at = now(), heartbeat_at = now()
 WHERE id = $1::bigint;
