-- finish_run: record a batch run's outcome and final counts (slots: each
-- (portfolio, date) the run covered is counted once, in one bucket).
--
-- $1 run id   $2 status ('succeeded' | 'partial' | 'failed' | 'interrupted' | 'held')
-- $3 processed   $4 skipped (already done)   $5 failed   $6 reclaimed   $7 lost
-- $8 failures (jsonb array of {portfolio_id, date, reason}; capped by the caller)
-- $9 held   $10 before_chain
-- Returns nothing.
UPDATE batch_runs
   SET status = $2::text, processed = $3::bigint, skipped = $4::bigint,
       failed = $5::bigint, reclaimed = $6::bigint, lost = $7::bigint,
       failures = $8::jsonb, held = $9::bigint, before_chain = $10::bigint,
       finished_at = now(), heartbeat_at = now()
 WHERE id = $1::bigint;
