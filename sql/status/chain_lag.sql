-- chain_lag: how far each portfolio's chain is behind the latest price date
-- (not after today, the database's clock), counted in price dates, as a
-- histogram: how many portfolios are N price dates behind.
-- Cheap on a big book, at any depth of history: a chain's end is
-- portfolios.equity_as_of (set with equity, in the same statement as the
-- snapshot; `pnl verify` checks it); only where that is NULL (never run, or
-- not run since migration 0012) one backward probe of
-- uq_portfolio_snapshot_date finds it. Then a loose index scan of
-- ix_market_prices_price_date over the dates from the oldest chain end to the
-- latest price date (one probe per date), counted per distinct chain end.
--
-- No parameters.
-- Returns one row: latest_price_date (date; NULL: no prices yet), portfolios,
--   up_to_date, never_run (no complete snapshot), behind (bigint),
--   lag_dates int[], lag_counts bigint[] (aligned: N price dates behind -> portfolios)
WITH RECURSIVE chain_end AS (
    SELECT CASE WHEN p.equity_as_of IS NOT NULL THEN p.equity_as_of
                ELSE (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                       WHERE s.portfolio_id = p.id AND s.is_complete
                       ORDER BY s.snapshot_date DESC LIMIT 1) END AS last_date
      FROM portfolios AS p
)
-- @include status/chain_lag_histogram
