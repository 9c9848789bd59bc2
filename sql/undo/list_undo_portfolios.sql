-- list_undo_portfolios: the portfolios an undo run changed (not yet restored),
-- for `--restore` to lock them (batch/lock_portfolios.sql) before it writes.
--
-- $1 undo run id (bigint)
-- Returns: portfolio_id, one row per portfolio
SELECT DISTINCT a.portfolio_id
  FROM snapshot_undo_audit AS a
 WHERE a.rescue_run_id = $1::bigint
   AND a.restored_at IS NULL
 ORDER BY a.portfolio_id;
