-- find_refilled_slots: rows (a snapshot or a claim: the dates were run again)
-- that a portfolio an undo run removed snapshots of holds again on or after
-- the undo's from date (recorded as it started; else the first date it removed
-- of that portfolio). `--restore` refuses while any exist: putting the old rows
-- back would overwrite new ones, or sit on top of a date run since. A date
-- with no snapshot when the undo ran (a hole in the chain: the removed rows
-- were computed across it) counts too once it is filled: restoring over it
-- would break the chain.
--
-- $1 undo run id (bigint)
-- Returns: portfolio_id, snapshot_date, is_complete, one row per refilled slot
WITH undo_run AS (
    SELECT (r.summary->>'from')::date AS from_date
      FROM rescue_runs AS r
     WHERE r.id = $1::bigint
),
removed AS (
    SELECT a.portfolio_id, min(a.snapshot_date) AS first_removed
      FROM snapshot_undo_audit AS a
     WHERE a.rescue_run_id = $1::bigint
       AND a.restored_at IS NULL
     GROUP BY a.portfolio_id
)
SELECT s.portfolio_id, s.snapshot_date, s.is_complete
  FROM removed AS m
  LEFT JOIN undo_run AS u ON true
  JOIN portfolio_snapshots AS s
    ON s.portfolio_id = m.portfolio_id
   AND s.snapshot_date >= LEAST(m.first_removed, u.from_date)
 ORDER BY s.portfolio_id, s.snapshot_date;
