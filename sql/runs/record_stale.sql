-- record_stale: store what a batch run carried forward (held symbols with no
-- close on a date it covers, valued at their latest earlier close) and the
-- dates it refused as too stale (--max-stale), once its marks are fixed.
--
-- $1 run id (bigint)   $2 stale_symbols (jsonb: {count, names, dates, refused})
-- Returns nothing.
UPDATE batch_runs
   SET stale_symbols = $2::jsonb
 WHERE id = $1::bigint;
