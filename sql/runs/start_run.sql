-- start_run: record a new batch run (status 'running').
--
-- $1 run date: the last date it computes (date)   $2 host (text)   $3 pid (bigint)
-- $4 from date: the first date it may compute (date; NULL = $1)
-- $5 its claims' lease (interval; NULL for a repair's internal run)
-- Returns one row: id (bigint), started_at (timestamptz)
INSERT INTO batch_runs (run_date, host, pid, from_date, lease)
VALUES ($1::date, $2::text, $3::bigint, $4::date, $5::interval)
RETURNING id, started_at;
