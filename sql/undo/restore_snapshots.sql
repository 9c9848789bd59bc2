-- restore_snapshots: put back every snapshot an undo run removed, exactly as
-- it was (ids included, from the archived jsonb), and each portfolio's equity
-- as it was before the undo; mark the archive rows restored. A plain INSERT:
-- if a slot was filled again meanwhile, the unique constraint aborts the whole
-- transaction (undo/find_refilled_slots.sql is checked first, after locking
-- the portfolios with batch/lock_portfolios.sql).
--
-- $1 undo run id (bigint)
-- Returns one row: restored (bigint: snapshots), portfolios (bigint: equity reset)
WITH archived AS (
    UPDATE snapshot_undo_audit AS a
       SET restored_at = now()
     WHERE a.rescue_run_id = $1::bigint
       AND a.restored_at IS NULL
    RETURNING a.portfolio_id, a.row_data, a.equity_before
),
restored AS (
    INSERT INTO portfolio_snapshots
    SELECT (jsonb_populate_record(NULL::portfolio_snapshots, a.row_data)).*
      FROM archived AS a
    RETURNING portfolio_id
),
equity AS (
    UPDATE portfolios AS pf
       SET equity_balance = e.equity_before
      FROM (SELECT DISTINCT a.portfolio_id, a.equity_before FROM archived AS a) AS e
     WHERE pf.id = e.portfolio_id
    RETURNING pf.id
)
SELECT (SELECT count(*) FROM restored) AS restored, (SELECT count(*) FROM equity) AS portfolios;
