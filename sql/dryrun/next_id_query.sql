-- next_id_query: for a dry run's temporary copy of a table (see pnl/db.py
-- use_dry_run_copies), the query that gives the first id after the real
-- table's, so that a row a dry run inserts never takes the id of a real one (a
-- batch run id is a claim token: a copy must not mistake real claims for its
-- own). Built by format() from an identifier, never a value; no row when the
-- table does not exist (a legacy schema: dedupe runs before the later migrations)
-- or has no id column (valuation_marks: keyed by (mark_date, symbol)).
--
-- $1 table name (text)
-- Returns one row: query (text) to run; it returns one bigint.
SELECT format('SELECT coalesce(max(t.id), 0) + 1 FROM %s AS t', to_regclass($1::text)) AS query
 WHERE to_regclass($1::text) IS NOT NULL
   AND EXISTS (SELECT 1 FROM pg_attribute AS a
                WHERE a.attrelid = to_regclass($1::text) AND a.attname = 'id' AND NOT a.attisdropped);
