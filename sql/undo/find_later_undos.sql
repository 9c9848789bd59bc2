-- find_later_undos: undo runs newer than $1 that removed snapshots of the same
-- portfolios dated before $1's from date (as recorded; else the first date $1
-- removed of that portfolio), and are
-- not restored yet. `--restore` refuses while any exist: such undo runs are
-- restored in reverse order (last undone, first restored). Restoring an older
-- undo first would put its later dates back while the newer undo's earlier
-- dates are still out (a hole in the chain), and set equity to what it was
-- before the older undo, not the chain end's NAV.
-- A newer undo that removed only dates on or after that first date removed
-- what was run again in $1's range (and after it: an undo removes every date
-- from its own on), which is what the refusal of a refilled slot tells the
-- operator to do; it does not block, else that advice would lead in a circle
-- (restore the newer undo first, which fills the slots again).
--
-- $1 undo run id (bigint)
-- Returns: rescue_run_id (the newer undo), portfolios (bigint: shared with $1),
--   example_portfolio_id (bigint), one row per newer undo run, newest first
SELECT later.rescue_run_id, count(DISTINCT later.portfolio_id) AS portfolios,
       min(later.portfolio_id) AS example_portfolio_id
  FROM snapshot_undo_audit AS later
 WHERE later.rescue_run_id > $1::bigint
   AND later.restored_at IS NULL
   AND later.snapshot_date < (SELECT LEAST(min(a.snapshot_date),
                                           (SELECT (r.summary->>'from')::date FROM rescue_runs AS r
                                             WHERE r.id = $1::bigint))
                                FROM snapshot_undo_audit AS a
                               WHERE a.rescue_run_id = $1::bigint AND a.restored_at IS NULL
                                 AND a.portfolio_id = later.portfolio_id)
 GROUP BY later.rescue_run_id
 ORDER BY later.rescue_run_id DESC;
