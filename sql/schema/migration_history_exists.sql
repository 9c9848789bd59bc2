-- migration_history_exists: whether yoyo's history table exists here
-- (false on a fresh or legacy database that yoyo has never touched).
--
-- No parameters.
-- Returns one row: present (bool)
SELECT to_regclass('_yoyo_migration') IS NOT NULL AS present;
