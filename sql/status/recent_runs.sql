-- recent_runs: the latest batch runs, newest first, for `pnl status`.
-- A 'running' run whose heartbeat is older than $2 is reported as stale: its
-- process probably died; its claims are recovered when their lease expires.
--
-- $1 how many (int)   $2 stale after (interval)
-- Returns: id, run_date, from_date, status, stale (bool), started_at, finished_at,
--          heartbeat_at, processed, skipped (already done), held, before_chain,
--          failed, reclaimed, lost, host, pid,
--          stale_symbols (jsonb: what it carried forward and refused; NULL before 0008)
SELECT r.id, r.run_date, r.from_date, r.status,
       (r.status = 'running' AND r.heartbeat_at < now() - $2::interval) AS stale,
       r.started_at, r.finished_at, r.heartbeat_at,
       r.processed, r.skipped, r.held, r.before_chain, r.failed, r.reclaimed, r.lost, r.host, r.pid,
       to_jsonb(r) -> 'stale_symbols' AS stale_symbols     -- a column from 0008 on: NULL before
  FROM batch_runs AS r
 ORDER BY r.id DESC
 LIMIT $1::int;
