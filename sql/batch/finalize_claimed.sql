-- finalize_claimed: compute and finalize the snapshots this run has claimed,
-- for one chunk of portfolios, in one statement (so in one transaction:
-- snapshot values, is_complete and equity change together or not at all).
-- Run it right after batch/lock_portfolios.sql, in the same transaction, and
-- after batch/plan_chunk_statements.sql (see there why). The values follow
-- the rule in batch/snapshot_values.sql (included below).
--
-- A portfolio that cannot be computed (failure_kind, see snapshot_values)
-- fails, and its claim is deleted (released).
--
-- Fencing: rows are written only WHERE batch_run_id = $1 AND NOT is_complete.
-- A run whose claim was taken over (its lease expired) writes nothing; its
-- portfolios are neither in finalized_ids nor in failed_ids: they are "lost".
-- Equity is SET to the new NAV, and equity_as_of to its date.
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 claimed portfolio ids (bigint[])
-- $4 gap-free (boolean): refuse to compute across a missing price date (the
--    batch; a repair replays an existing chain as it is, holes included)
-- Returns one row: finalized_ids bigint[], failed_ids bigint[],
--                  failed_kinds text[], failed_details text[] (aligned by position)
-- @include batch/snapshot_values
,
finalized AS (
    UPDATE portfolio_snapshots AS s
       SET opening_equity  = c.opening_equity,
           capital_flow    = c.capital_flow,
           daily_pnl       = c.daily_pnl,
           net_asset_value = c.net_asset_value,
           daily_return    = c.daily_return,
           cumulative_pnl  = c.cumulative_pnl,
           long_value      = c.long_value,
           short_value     = c.short_value,
           gross_exposure  = c.gross_exposure,
           net_exposure    = c.net_exposure,
           num_positions   = c.num_positions,
           is_complete     = true,
           completed_at    = now(),
           lease_expires_at = NULL
      FROM computed AS c
     -- The fence: only this run's unfinished claim is written. It is spelled
     -- as join conditions against constants carried by c, not as filters on s:
     -- the statistics know nothing of claims made seconds ago, and a filter
     -- they estimate at one row of s turns the join inside out (measured:
     -- 35 s per chunk at 1M portfolios). As join conditions they are checked
     -- on each row reached by primary key, and rechecked on the locked row
     -- like any WHERE condition when a concurrent run changed it.
     -- The failure test sits inside the join key for the same reason.
     WHERE s.id = CASE WHEN c.failure_kind IS NULL THEN c.snapshot_id END
       AND s.batch_run_id = c.fence_run_id
       AND s.is_complete = c.fence_complete
    RETURNING s.portfolio_id, s.net_asset_value
),
equity AS (
    UPDATE portfolios AS pf
       SET equity_balance = f.net_asset_value,
           equity_as_of = $2::date
      FROM finalized AS f
     WHERE pf.id = f.portfolio_id
    RETURNING pf.id
),
released AS (
    DELETE FROM portfolio_snapshots AS s
     USING computed AS c
     WHERE s.id = CASE WHEN c.failure_kind IS NOT NULL THEN c.snapshot_id END
       AND s.batch_run_id = c.fence_run_id               -- the fence, as in finalized
       AND s.is_complete = c.fence_complete
    RETURNING s.portfolio_id
)
SELECT ARRAY(SELECT f.portfolio_id FROM finalized AS f ORDER BY 1)::bigint[] AS finalized_ids,
       ARRAY(SELECT r.portfolio_id FROM released AS r ORDER BY 1)::bigint[]  AS failed_ids,
       ARRAY(SELECT c.failure_kind FROM released AS r
               JOIN computed AS c ON c.portfolio_id = r.portfolio_id
              ORDER BY r.portfolio_id)::text[]                                AS failed_kinds,
       ARRAY(SELECT c.failure_detail FROM released AS r
               JOIN computed AS c ON c.portfolio_id = r.portfolio_id
              ORDER BY r.portfolio_id)::text[]                                AS failed_details,
       (SELECT count(*) FROM equity)                                          AS equity_updated;
