-- chain_lag_probe: status/chain_lag.sql for a database not migrated to 0012
-- yet (no portfolios.equity_as_of): `pnl status` picks it there. Same result;
-- each chain's end is one backward probe of uq_portfolio_snapshot_date per
-- portfolio (its latest complete snapshot), which grows with history depth.
--
-- No parameters.
-- Returns one row: latest_price_date (date; NULL: no prices yet), portfolios,
--   up_to_date, never_run (no complete snapshot), behind (bigint),
--   lag_dates int[], lag_counts bigint[] (aligned: N price dates behind -> portfolios)
WITH RECURSIVE chain_end AS (
    SELECT (SELECT s.snapshot_date FROM portfolio_snapshots AS s
             WHERE s.portfolio_id = p.id AND s.is_complete
             ORDER BY s.snapshot_date DESC LIMIT 1) AS last_date
      FROM portfolios AS p
)
-- @include status/chain_lag_histogram
