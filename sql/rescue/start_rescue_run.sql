-- start_rescue_run: record a dedupe or repair run (status 'running').
--
-- $1 kind ('dedupe' | 'repair')   $2 host (text)   $3 pid (bigint)
-- Returns one row: id (bigint)
INSERT INTO rescue_runs (kind, host, pid)
VALUES ($1::text, $2::text, $3::bigint)
RETURNING id;
