-- prove_exactly_once: the demo's evidence for one date. Exactly once means
-- snapshots = complete = distinct_portfolios = portfolios, and no portfolio's
-- equity differs from its latest NAV.
--
-- $1 the date (date)
-- Returns one row: portfolios, snapshots, complete, distinct_portfolios,
--                  equity_mismatches (all bigint)
SELECT (SELECT count(*) FROM portfolios)                                        AS portfolios,
       (SELECT count(*) FROM portfolio_snapshots WHERE snapshot_date = $1::date) AS snapshots,
       (SELECT count(*) FROM portfolio_snapshots
         WHERE snapshot_date = $1::date AND is_complete)                        AS complete,
       (SELECT count(DISTINCT portfolio_id) FROM portfolio_snapshots
         WHERE snapshot_date = $1::date)                                        AS distinct_portfolios,
       (SELECT count(*) FROM portfolios AS p
         WHERE p.equity_balance IS DISTINCT FROM (
               SELECT s.net_asset_value FROM portfolio_snapshots AS s
                WHERE s.portfolio_id = p.id AND s.is_complete
                ORDER BY s.snapshot_date DESC LIMIT 1))                         AS equity_mismatches;
