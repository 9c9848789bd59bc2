-- unique_constraint_exists: whether uq_portfolio_snapshot_date exists yet.
--
-- No parameters.
-- Returns one row: present (bool)
SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'uq_portfolio_snapshot_date') AS present;
