-- insert_complete: claim and finalize in one statement. For one chunk of
-- portfolios and date D ($2), INSERT each free slot as a complete snapshot,
-- computed by the rule in batch/snapshot_values.sql (included below), and set
-- the portfolio's equity to its NAV: the row is written once, born complete.
--
-- The claim is still INSERT ... ON CONFLICT DO NOTHING RETURNING on
-- uq_portfolio_snapshot_date: a slot another run holds (claimed, or inserted a
-- moment ago) comes back in no list, and this run writes nothing for it.
-- Crash safety is the transaction's: until it commits nobody sees a row, and
-- a run killed part-way leaves nothing behind (no claim, no lease to expire).
-- Equity is SET from the rows actually inserted (RETURNING), never added to,
-- and equity_as_of to D (the snapshot it was set from).
--
-- Nothing is written for a portfolio whose slot exists, or that cannot be
-- computed now (failure_kind, see snapshot_values): the caller hands those to
-- the two-step protocol (claim_owed_dates, finalize_claimed), which claims,
-- reports and releases them with reasons.
-- Run it right after batch/lock_free_portfolios.sql, in the same transaction,
-- for the portfolios it locked, and after batch/plan_chunk_statements.sql (see
-- there why).
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- $4 gap-free (boolean; the batch passes true)
-- $5 expected previous dates (date[], aligned with $3): the complete snapshot
--    the caller's plan says each slot follows (NULL: a chain's first). A
--    portfolio whose previous complete snapshot is another one now (an undo,
--    a repair or another run changed its chain since the plan) is not
--    written: the caller re-plans it the two-step way.
-- Returns one row: inserted_ids bigint[]   (the snapshots written)
--                  refused_ids bigint[], refused_kinds text[], refused_details text[]
--                  (not computable now, aligned by position; nothing written)
-- @include batch/snapshot_values
,
inserted AS (
    INSERT INTO portfolio_snapshots
           (portfolio_id, snapshot_date, is_complete, opening_equity, daily_pnl, capital_flow,
            net_asset_value, daily_return, cumulative_pnl, long_value, short_value, gross_exposure,
            net_exposure, num_positions, batch_run_id, claimed_at, completed_at)
    SELECT c.portfolio_id, $2::date, true, c.opening_equity, c.daily_pnl, c.capital_flow,
           c.net_asset_value, c.daily_return, c.cumulative_pnl, c.long_value, c.short_value,
           c.gross_exposure, c.net_exposure, c.num_positions, $1::bigint, now(), now()
      FROM computed AS c
      JOIN unnest($3::bigint[], $5::date[]) AS e(portfolio_id, prev_date)
        ON e.portfolio_id = c.portfolio_id
     WHERE c.snapshot_id IS NULL
       AND c.failure_kind IS NULL
       AND c.prev_date IS NOT DISTINCT FROM e.prev_date
     ORDER BY c.portfolio_id
        ON CONFLICT (portfolio_id, snapshot_date) DO NOTHING
    RETURNING portfolio_id, net_asset_value
),
equity AS (
    UPDATE portfolios AS pf
       SET equity_balance = i.net_asset_value,
           equity_as_of = $2::date
      FROM inserted AS i
     WHERE pf.id = i.portfolio_id
    RETURNING pf.id
),
refused AS (
    -- only free slots are refused: a slot that exists (complete, or someone's claim) is not
    -- ours to judge; the caller hands it to the two-step path (already done, or held)
    SELECT c.portfolio_id, c.failure_kind, c.failure_detail
      FROM computed AS c
     WHERE c.failure_kind IS NOT NULL
       AND c.snapshot_id IS NULL
)
SELECT ARRAY(SELECT i.portfolio_id FROM inserted AS i ORDER BY 1)::bigint[]                 AS inserted_ids,
       ARRAY(SELECT r.portfolio_id FROM refused AS r ORDER BY r.portfolio_id)::bigint[]    AS refused_ids,
       ARRAY(SELECT r.failure_kind FROM refused AS r ORDER BY r.portfolio_id)::text[]      AS refused_kinds,
       ARRAY(SELECT r.failure_detail FROM refused AS r ORDER BY r.portfolio_id)::text[]    AS refused_details,
       (SELECT count(*) FROM equity)                                        AS equity_updated;
