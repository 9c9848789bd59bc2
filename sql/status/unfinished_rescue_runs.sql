-- unfinished_rescue_runs: dedupe, repair and undo runs that did not end as
-- 'done' or 'restored': a process killed mid-way (still 'running') or a run
-- that stopped part-way ('failed'). An undo or dedupe works in one transaction
-- per chunk, so such a run may have changed part of the book: finish it (run
-- the same command again) or put it back (`--restore RUN_ID`). A repair is one
-- transaction: its row appears only if it committed.
--
-- No parameters.
-- Returns: id bigint, kind text, status text, started_at timestamptz, host text,
--          pid bigint, summary jsonb; oldest first
SELECT r.id, r.kind, r.status, r.started_at, r.host, r.pid, r.summary
  FROM rescue_runs AS r
 WHERE r.status IN ('running', 'failed')
 ORDER BY r.id;
