-- mark_abandoned: runs whose process died are marked 'abandoned', so that no
-- row stays 'running' forever. Dead means: status 'running', no heartbeat for
-- longer than its own lease (a live run records one after every chunk, unless
-- its last one is younger than a third of its lease, and while it waits), and
-- no unfinished claim whose lease is still live. Run by
-- every `pnl batch run` / `backfill` when it starts. A run marked by mistake
-- (alive but stalled past its lease) overwrites the status when it finishes.
-- Rows from before 0007 have no lease: 15 minutes (the default) is assumed.
--
-- No parameters.
-- Returns one row per run marked: id, run_date, heartbeat_at
UPDATE batch_runs AS r
   SET status = 'abandoned', finished_at = now()
 WHERE r.status = 'running'
   AND r.heartbeat_at < now() - COALESCE(r.lease, interval '15 minutes')
   AND NOT EXISTS (
        SELECT 1 FROM portfolio_snapshots AS s
         WHERE NOT s.is_complete
           AND s.batch_run_id = r.id
           AND s.lease_expires_at >= now())
RETURNING r.id, r.run_date, r.heartbeat_at;
