-- lock_free_portfolios: lock those of the chunk's portfolio rows that no other
-- transaction holds, in id order, at the start of a one-write transaction
-- (batch/insert_complete.sql). A portfolio another run is writing right now is
-- skipped, not waited for: that run's transaction may be a whole chunk long.
-- The caller counts the skipped ones held and looks at them again at the end
-- of the run (by then done, else claimed the two-step way). FOR NO KEY UPDATE, as in
-- batch/lock_portfolios.sql: writers of one portfolio take turns.
--
-- $1 portfolio ids (bigint[])
-- Returns: id (bigint), one row per portfolio locked by this transaction
SELECT p.id
  FROM portfolios AS p
 WHERE p.id = ANY($1::bigint[])
 ORDER BY p.id
   FOR NO KEY UPDATE SKIP LOCKED;
