-- next_ids: for a dry run's temporary copies (see pnl/db.py dry_run_copies):
-- the first id after the real table's, per table a rescue or batch writes, so
-- that a row a dry run inserts never takes the id of a real one (a batch run id
-- is a claim token: a copy must not mistake real claims for its own).
--
-- No parameters.
-- Returns one row: one bigint column per table, named like the table.
SELECT (SELECT coalesce(max(t.id), 0) + 1 FROM portfolio_snapshots AS t)   AS portfolio_snapshots,
       (SELECT coalesce(max(t.id), 0) + 1 FROM portfolios AS t)            AS portfolios,
       (SELECT coalesce(max(t.id), 0) + 1 FROM batch_runs AS t)            AS batch_runs,
       (SELECT coalesce(max(t.id), 0) + 1 FROM rescue_runs AS t)           AS rescue_runs,
       (SELECT coalesce(max(t.id), 0) + 1 FROM snapshot_dedupe_audit AS t) AS snapshot_dedupe_audit,
       (SELECT coalesce(max(t.id), 0) + 1 FROM snapshot_repair_audit AS t) AS snapshot_repair_audit;
