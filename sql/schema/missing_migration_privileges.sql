-- missing_migration_privileges: what `pnl migrate` / `pnl rollback` need that
-- the current user lacks (they run as the owner role of sql/roles/create_roles.sql).
-- Checked before yoyo takes its lock, so a role without them gets one line
-- naming the privilege instead of a 30-second wait on yoyo_lock.
--
-- No parameters.
-- Returns one row per missing privilege: missing (text), e.g.
--   'CREATE on schema public', 'INSERT and DELETE on table yoyo_lock',
--   'ownership of table portfolio_snapshots (owned by pnl_owner)'
SELECT format('CREATE on schema %I', current_schema()) AS missing
 WHERE NOT has_schema_privilege(current_schema(), 'CREATE')
UNION ALL
SELECT format('INSERT and DELETE on table %s', to_regclass('yoyo_lock')) AS missing
 WHERE to_regclass('yoyo_lock') IS NOT NULL
   AND NOT (has_table_privilege(to_regclass('yoyo_lock'), 'INSERT')
            AND has_table_privilege(to_regclass('yoyo_lock'), 'DELETE'))
UNION ALL
SELECT format('ownership of table %s (owned by %I)', c.oid::regclass, pg_get_userbyid(c.relowner)) AS missing
  FROM pg_class AS c
 WHERE c.oid IN (to_regclass('portfolios'), to_regclass('portfolio_snapshots'), to_regclass('batch_runs'),
                 to_regclass('_yoyo_migration'))
   AND NOT pg_has_role(c.relowner, 'USAGE');
