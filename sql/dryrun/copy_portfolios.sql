-- copy_portfolios: fill a repair dry run's copies of portfolios and
-- portfolio_snapshots with the given portfolios' rows (their whole chains: the
-- replay reads earlier snapshots for the opening equity).
--
-- $1 portfolio ids (bigint[])
-- Returns nothing.
WITH snapshots AS (
    INSERT INTO pnl_dry_run_portfolio_snapshots
    SELECT s.* FROM portfolio_snapshots AS s WHERE s.portfolio_id = ANY($1::bigint[])
    RETURNING 1
)
INSERT INTO pnl_dry_run_portfolios
SELECT p.* FROM portfolios AS p WHERE p.id = ANY($1::bigint[]);
