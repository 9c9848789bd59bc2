-- remove_snapshots: `pnl batch undo` for one chunk of portfolios, in one
-- statement: every COMPLETE snapshot on or after the date is deleted and
-- archived whole (to_jsonb, in snapshot_undo_audit, under the undo's run id,
-- with the portfolio's equity before the undo), and equity is set back to
-- what it was before that date:
--   the NAV of the latest complete snapshot left (before the date), else the
--   opening_equity of the earliest removed one (a legacy row without one:
--   NAV - daily_pnl - capital_flow, the flow taken as 0 when not recorded);
--   equity_as_of becomes that snapshot's date (NULL: no snapshot left).
-- The snapshot equity is set back to is locked (FOR SHARE) until commit: a
-- DELETE of it (or an UPDATE that reopens it) in another transaction still
-- open is waited for, and the next older one taken if it went; one that comes
-- later waits for the undo, and 0013's trigger then clears equity_as_of. Without
-- the lock, equity_as_of could name a snapshot deleted meanwhile. (A DELETE by
-- hand of such a snapshot, in a transaction that then waits for this undo's lock
-- on the portfolio, is a deadlock: PostgreSQL aborts one of the two, and nothing
-- is left half-done.)
-- Run it in the chunk's transaction after batch/lock_portfolios.sql and the
-- check that no live claim on or after the date exists (undo/list_live_claims).
-- Unfinished claims are not touched. A dry run executes it and rolls back.
--
-- $1 undo run id (rescue_runs, kind 'undo'; NULL for a dry run: nothing is archived)
-- $2 portfolio ids (bigint[])   $3 from date (date)
-- Returns one row: dates date[], counts bigint[] (snapshots removed per date),
--   equity_ids bigint[], equity_before numeric[], equity_after numeric[] (aligned)
WITH removed AS (
    DELETE FROM portfolio_snapshots AS s
     WHERE s.portfolio_id = ANY($2::bigint[])
       AND s.snapshot_date >= $3::date
       AND s.is_complete
    RETURNING s.*
),
earliest AS (
    SELECT DISTINCT ON (r.portfolio_id) r.portfolio_id,
           COALESCE(r.opening_equity, r.net_asset_value - r.daily_pnl - COALESCE(r.capital_flow, 0)) AS opening
      FROM removed AS r
     ORDER BY r.portfolio_id, r.snapshot_date
),
equity AS (
    SELECT e.portfolio_id, pf.equity_balance AS equity_before,
           COALESCE(prev.net_asset_value, e.opening, pf.equity_balance) AS equity_after,
           prev.snapshot_date AS as_of_after
      FROM earliest AS e
      JOIN portfolios AS pf ON pf.id = e.portfolio_id
      LEFT JOIN LATERAL (
            SELECT s.net_asset_value, s.snapshot_date
              FROM portfolio_snapshots AS s
             WHERE s.portfolio_id = e.portfolio_id
               AND s.snapshot_date < $3::date
               AND s.is_complete
               AND s.net_asset_value IS NOT NULL
             ORDER BY s.snapshot_date DESC
             LIMIT 1
               FOR SHARE) AS prev ON true
),
archived AS (
    INSERT INTO snapshot_undo_audit (rescue_run_id, snapshot_id, portfolio_id, snapshot_date, row_data, equity_before)
    SELECT $1::bigint, r.id, r.portfolio_id, r.snapshot_date, to_jsonb(r), q.equity_before
      FROM removed AS r
      JOIN equity AS q ON q.portfolio_id = r.portfolio_id
     WHERE $1::bigint IS NOT NULL
    RETURNING snapshot_id
),
updated AS (
    UPDATE portfolios AS pf
       SET equity_balance = q.equity_after,
           equity_as_of = q.as_of_after
      FROM equity AS q
     WHERE pf.id = q.portfolio_id
    RETURNING pf.id
),
per_date AS (
    SELECT r.snapshot_date, count(*) AS n FROM removed AS r GROUP BY r.snapshot_date
)
SELECT ARRAY(SELECT d.snapshot_date FROM per_date AS d ORDER BY 1)::date[]            AS dates,
       ARRAY(SELECT d.n FROM per_date AS d ORDER BY d.snapshot_date)::bigint[]         AS counts,
       ARRAY(SELECT q.portfolio_id FROM equity AS q ORDER BY 1)::bigint[]              AS equity_ids,
       ARRAY(SELECT q.equity_before FROM equity AS q ORDER BY q.portfolio_id)::numeric[] AS equity_before,
       ARRAY(SELECT q.equity_after FROM equity AS q ORDER BY q.portfolio_id)::numeric[]  AS equity_after,
       (SELECT count(*) FROM archived)                                                 AS archived,
       (SELECT count(*) FROM updated)                                                  AS updated;
