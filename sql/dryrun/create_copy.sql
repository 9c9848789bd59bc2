-- create_copy: the DDL of an empty temporary copy of a table (same columns,
-- defaults, constraints, indexes, identity), named pnl_dry_run_<table>,
-- dropped with the transaction. Built by format() from an identifier, never a value.
--
-- $1 table name (text)
-- Returns one row: ddl (text) to execute; no row when the table does not exist.
SELECT format('CREATE TEMP TABLE %I (LIKE %s INCLUDING ALL) ON COMMIT DROP',
              'pnl_dry_run_' || $1::text, to_regclass($1::text)) AS ddl
 WHERE to_regclass($1::text) IS NOT NULL;
