-- find_refilled_slots: slots an undo run removed that hold a row again (a
-- snapshot or a claim: the dates were run again). `--restore` refuses while
-- any exist: putting the old rows back would need to overwrite new ones.
--
-- $1 undo run id (bigint)
-- Returns: portfolio_id, snapshot_date, is_complete, one row per refilled slot
SELECT a.portfolio_id, a.snapshot_date, s.is_complete
  FROM snapshot_undo_audit AS a
  JOIN portfolio_snapshots AS s
    ON s.portfolio_id = a.portfolio_id AND s.snapshot_date = a.snapshot_date
 WHERE a.rescue_run_id = $1::bigint
   AND a.restored_at IS NULL
 ORDER BY a.portfolio_id, a.snapshot_date;
