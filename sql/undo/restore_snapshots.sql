-- restore_snapshots: put back every snapshot an undo run removed, exactly as
-- it was (ids included, from the archived jsonb), and each portfolio's equity
-- as it was before the undo; mark the archive rows restored. equity_as_of
-- becomes the latest restored snapshot's date when that equity is its NAV
-- (as a healthy chain had it) and no later complete snapshot exists, else
-- NULL (not known to come from the chain end). A plain INSERT: if a slot was
-- filled again meanwhile, the unique constraint aborts the whole transaction
-- (undo/find_refilled_slots.sql and undo/find_later_undos.sql are checked
-- first, after locking the portfolios with batch/lock_portfolios.sql).
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
latest AS (
    -- per portfolio: its equity before the undo, and the latest restored snapshot
    SELECT DISTINCT ON (a.portfolio_id) a.portfolio_id, a.equity_before,
           (a.row_data ->> 'snapshot_date')::date AS snapshot_date,
           (a.row_data ->> 'net_asset_value')::numeric AS net_asset_value,
           (a.row_data ->> 'is_complete')::boolean AS is_complete
      FROM archived AS a
     ORDER BY a.portfolio_id, (a.row_data ->> 'snapshot_date')::date DESC
),
equity AS (
    UPDATE portfolios AS pf
       SET equity_balance = l.equity_before,
           -- not when the chain goes on past the restored dates (written outside
           -- pnl: pnl restores newest first): that equity is not the chain end's NAV
           equity_as_of = CASE WHEN l.is_complete AND l.net_asset_value = l.equity_before
                                AND NOT EXISTS (SELECT FROM portfolio_snapshots AS s
                                                 WHERE s.portfolio_id = l.portfolio_id
                                                   AND s.snapshot_date > l.snapshot_date
                                                   AND s.is_complete)
                               THEN l.snapshot_date END
      FROM latest AS l
     WHERE pf.id = l.portfolio_id
    RETURNING pf.id
)
SELECT (SELECT count(*) FROM restored) AS restored, (SELECT count(*) FROM equity) AS portfolios;
