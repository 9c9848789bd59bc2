-- 0002b_rescue_audit rollback: drops the rescue audit trail. The archived
-- rows of past dedupe and repair runs are lost with it: take a dump first
-- (pg_dump -t 'snapshot_*_audit' -t rescue_runs).
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- The tables this migration created.
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS snapshot_repair_audit;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS snapshot_dedupe_audit;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS rescue_runs;
