-- runs_in_flight: the demo's evidence that two runs were in flight together:
-- the batch runs of a date that are still running, each with how many of the
-- chunk statements on this database wait on a lock right now (the same count
-- on every row: a backend does not say which run it serves). Behind the
-- demo's gate (demo/hold_equity_writes.sql) one run waits to write equity
-- and the other waits for the first one's portfolio row locks or slots.
--
-- $1 the date (date)
-- Returns one row per running run: batch_run_id (bigint), waiting (bigint)
SELECT r.id AS batch_run_id,
       (SELECT count(*)
          FROM pg_stat_activity AS a
         WHERE a.datname = current_database()
           AND a.wait_event_type = 'Lock'
           AND (a.query LIKE '-- insert_complete:%' OR a.query LIKE '-- lock_portfolios:%'
                OR a.query LIKE '-- claim_owed_dates:%' OR a.query LIKE '-- finalize_claimed:%')) AS waiting
  FROM batch_runs AS r
 WHERE r.run_date = $1::date
   AND r.status = 'running'
 ORDER BY r.id;
