-- fresh_activity: forget this transaction's snapshot of the statistics views,
-- so that the next read of pg_stat_activity (demo/runs_in_flight.sql) sees
-- now, not the moment of the first read (the demo reads it in a loop inside
-- the transaction that holds its gate).
--
-- No parameters. Returns nothing useful (void).
SELECT pg_stat_clear_snapshot();
