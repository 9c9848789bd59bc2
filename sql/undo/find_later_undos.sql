-- find_later_undos: undo runs newer than $1 that removed snapshots of the same
-- portfolios and are not restored yet. `--restore` refuses while any exist:
-- undo runs are restored in reverse order (last undone, first restored).
-- Restoring an older undo first would put its later dates back while the
-- newer undo's earlier dates are still out (a hole in the chain), and set
-- equity to what it was before the older undo, not the chain end's NAV.
--
-- $1 undo run id (bigint)
-- Returns: rescue_run_id (the newer undo), portfolios (bigint: shared with $1),
--   example_portfolio_id (bigint), one row per newer undo run, newest first
SELECT later.rescue_run_id, count(DISTINCT later.portfolio_id) AS portfolios,
       min(later.portfolio_id) AS example_portfolio_id
  FROM snapshot_undo_audit AS later
 WHERE later.rescue_run_id > $1::bigint
   AND later.restored_at IS NULL
   AND later.portfolio_id IN (SELECT a.portfolio_id FROM snapshot_undo_audit AS a
                               WHERE a.rescue_run_id = $1::bigint AND a.restored_at IS NULL)
 GROUP BY later.rescue_run_id
 ORDER BY later.rescue_run_id DESC;
