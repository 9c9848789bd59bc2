-- shadow_with_copy: the DDL that renames a filled temporary copy to the table's
-- own name. Temporary tables come first in the search path, so from then on,
-- in this session, the unqualified name means the copy.
--
-- $1 table name (text)
-- Returns one row: ddl (text) to execute; no row when there is no copy.
SELECT format('ALTER TABLE pg_temp.%I RENAME TO %I', 'pnl_dry_run_' || $1::text, $1::text) AS ddl
 WHERE to_regclass(format('pg_temp.%I', 'pnl_dry_run_' || $1::text)) IS NOT NULL;
