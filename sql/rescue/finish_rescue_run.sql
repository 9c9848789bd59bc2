-- finish_rescue_run: record a dedupe or repair run's outcome and summary.
--
-- $1 rescue run id   $2 status ('done' | 'failed' | 'restored')   $3 summary (jsonb)
-- Returns nothing.
UPDATE rescue_runs
   SET status = $2::text, summary = summary || $3::jsonb, finished_at = now()
 WHERE id = $1::bigint;
