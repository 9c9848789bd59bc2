-- equity_as_of_mismatch: portfolios whose equity_as_of (migration 0012) is set
-- but is not the date of their latest complete snapshot. pnl sets it with
-- equity, in the same statement as the snapshot, so a row means snapshots
-- were written or removed by something else: a pnl older than 0012 (it does
-- not set the column), snapshots deleted by hand. `pnl status` reads chain
-- ends from this column, so its chain lag is wrong for these portfolios.
-- Needs 0012 (on an older schema this check is reported as not run; the
-- equity_mismatch check runs regardless).
-- What to do: `pnl repair --portfolio <portfolio_id> --from <latest_snapshot_date>`
-- (or `pnl repair --all-broken`). A row without a latest_snapshot_date has
-- nothing to replay: check its equity, then
-- `UPDATE portfolios SET equity_as_of = NULL WHERE id = <portfolio_id>`.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/equity_as_of_mismatch.sql
SELECT p.id AS portfolio_id, p.equity_as_of, l.snapshot_date AS latest_snapshot_date,
       p.equity_balance, l.net_asset_value AS latest_nav
  FROM portfolios AS p
  LEFT JOIN LATERAL (
        SELECT s.snapshot_date, s.net_asset_value
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id AND s.is_complete
         ORDER BY s.snapshot_date DESC
         LIMIT 1) AS l ON true
 WHERE p.equity_as_of IS NOT NULL
   AND p.equity_as_of IS DISTINCT FROM l.snapshot_date
 ORDER BY p.id;
