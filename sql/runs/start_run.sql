-- start_run: record a new batch run (status 'running').
--
-- $1 run date (date)   $2 host (text)   $3 pid (bigint)
-- Returns one row: id (bigint), started_at (timestamptz)
INSERT INTO batch_runs (run_date, host, pid)
VALUES ($1::date, $2::text, $3::bigint)
RETURNING id, started_at;
