-- settle_interrupted_undos: after an undo run finished, the interrupted undo
-- runs it completed are marked 'done', with finished_by in their summary, so
-- that `pnl status` stops calling them UNFINISHED. An interrupted undo is
-- completed when none of the portfolios it archived has a complete snapshot
-- left on or after the first date it removed of that portfolio (running the
-- same command again, as status advises, does exactly that). Its archive is
-- untouched: `pnl batch undo --restore` of it works as before (newest first).
--
-- $1 the undo run that finished (bigint)
-- $2 the interrupted runs to look at (bigint[]: ended, or their process gone)
-- Returns one row per run marked done: id
WITH candidates AS (
    SELECT r.id
      FROM rescue_runs AS r
     WHERE r.id = ANY($2::bigint[])
       AND r.kind = 'undo'
       AND r.status IN ('running', 'failed')
),
first_removed AS (
    SELECT a.rescue_run_id, a.portfolio_id, min(a.snapshot_date) AS from_date
      FROM snapshot_undo_audit AS a
      JOIN candidates AS c ON c.id = a.rescue_run_id
     GROUP BY a.rescue_run_id, a.portfolio_id
),
not_complete AS (
    SELECT DISTINCT f.rescue_run_id
      FROM first_removed AS f
     WHERE EXISTS (SELECT 1
                     FROM portfolio_snapshots AS s
                    WHERE s.portfolio_id = f.portfolio_id
                      AND s.snapshot_date >= f.from_date
                      AND s.is_complete)
)
UPDATE rescue_runs AS r
   SET status = 'done',
       finished_at = now(),
       summary = r.summary || jsonb_build_object('finished_by', $1::bigint)
  FROM candidates AS c
 WHERE r.id = c.id
   AND NOT EXISTS (SELECT 1 FROM not_complete AS n WHERE n.rescue_run_id = c.id)
RETURNING r.id;
