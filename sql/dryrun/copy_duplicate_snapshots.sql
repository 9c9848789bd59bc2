-- copy_duplicate_snapshots: fill a dedupe dry run's copy of portfolio_snapshots
-- with every row of every duplicate (portfolio_id, snapshot_date) group: all
-- that delete_duplicate_snapshots.sql reads.
--
-- No parameters. Returns nothing.
INSERT INTO pnl_dry_run_portfolio_snapshots
SELECT s.*
  FROM portfolio_snapshots AS s
 WHERE (s.portfolio_id, s.snapshot_date) IN (
        SELECT d.portfolio_id, d.snapshot_date
          FROM portfolio_snapshots AS d
         GROUP BY d.portfolio_id, d.snapshot_date
        HAVING count(*) > 1);
