-- applied_migrations: the migration ids yoyo has recorded as applied.
-- Run only when schema/migration_history_exists.sql says the table exists.
--
-- No parameters.
-- Returns: migration_id (text), applied_at_utc (timestamp)
SELECT m.migration_id, m.applied_at_utc
  FROM _yoyo_migration AS m
 ORDER BY m.migration_id;
