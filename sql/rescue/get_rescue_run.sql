-- get_rescue_run: one dedupe or repair run, for `pnl dedupe --restore`.
--
-- $1 rescue run id (bigint)
-- Returns at most one row: id, kind, status, started_at, finished_at, summary
SELECT r.id, r.kind, r.status, r.started_at, r.finished_at, r.summary
  FROM rescue_runs AS r
 WHERE r.id = $1::bigint;
