-- database_exists: whether the embedded server has its database `pnl` yet
-- (the name is fixed here and in pnl/embedded.py: DATABASE).
--
-- No parameters.
-- Returns one row: present (bool)
SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'pnl') AS present;
