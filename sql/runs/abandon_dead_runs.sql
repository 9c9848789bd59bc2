-- abandon_dead_runs: runs whose process is known to be gone (the caller saw
-- that its pid no longer exists on this host, the host batch_runs recorded)
-- are marked 'abandoned' and their unfinished claims deleted, so that `pnl
-- batch undo` need not wait out the lease of a run that was killed (kill -9,
-- OOM). Nothing of a complete snapshot is touched. Statements of the dead
-- process still in flight at the server hold row locks on the portfolios they
-- write, which undo takes before it removes anything, and cannot commit an
-- explicit transaction without their client.
--
-- $1 run ids (bigint[])   $2 this host (text: a run recorded on another host is left alone)
-- Returns one row per run: id, status_was (text), claims_released (bigint)
WITH runs AS (
    SELECT r.id, r.status
      FROM batch_runs AS r
     WHERE r.id = ANY($1::bigint[])
       AND r.host = $2::text
),
abandoned AS (
    UPDATE batch_runs AS r
       SET status = 'abandoned', finished_at = now()
      FROM runs AS k
     WHERE r.id = k.id
       AND r.status = 'running'
    RETURNING r.id
),
released AS (
    DELETE FROM portfolio_snapshots AS s
     USING runs AS k
     WHERE s.batch_run_id = k.id
       AND NOT s.is_complete
    RETURNING s.batch_run_id
)
SELECT k.id, k.status AS status_was,
       (SELECT count(*) FROM released AS x WHERE x.batch_run_id = k.id) AS claims_released
  FROM runs AS k
 ORDER BY k.id;
