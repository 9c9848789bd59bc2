-- restart_copy_ids: make a temporary copy's identity continue after the real table's ids.
--
-- $1 table name (text)   $2 the next id (bigint, from dryrun/next_ids)
-- Returns one row: setval (bigint)
SELECT setval(pg_get_serial_sequence(format('pg_temp.%I', 'pnl_dry_run_' || $1::text), 'id'), $2::bigint, false);
