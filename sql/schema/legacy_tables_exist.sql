-- legacy_tables_exist: whether the legacy tables are here already (what
-- `pnl migrate --baseline` adopts): portfolio_snapshots stands for them all.
--
-- No parameters.
-- Returns one row: present (bool)
SELECT to_regclass('portfolio_snapshots') IS NOT NULL AS present;
