-- equity_mismatch: portfolios whose equity_balance is not the NAV of their
-- latest complete snapshot, or whose equity_as_of is not that snapshot's date.
-- pnl sets equity to that NAV, and equity_as_of to its date, in the same
-- statement as the snapshot, so a row means equity was changed by something
-- else: the legacy `equity_balance += daily_pnl`, a manual edit, snapshots
-- deleted by hand, or a pnl older than migration 0012 that wrote snapshots
-- without setting equity_as_of (`pnl status` reads chain ends from it).
-- Needs the idempotency migration (is_complete) and 0012 (equity_as_of).
-- What to do: `pnl repair --portfolio <portfolio_id> --from <latest_snapshot_date>`
-- (or `pnl repair --all-broken`), which recomputes from the last good snapshot.
-- A row without a latest_snapshot_date (equity_as_of set, no complete snapshot
-- left) has nothing to replay: check its equity, then
-- `UPDATE portfolios SET equity_as_of = NULL WHERE id = <portfolio_id>`.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/equity_mismatch.sql
SELECT p.id AS portfolio_id, p.equity_balance, l.snapshot_date AS latest_snapshot_date,
       l.net_asset_value AS latest_nav, p.equity_balance - l.net_asset_value AS difference,
       p.equity_as_of
  FROM portfolios AS p
  LEFT JOIN LATERAL (
        SELECT s.snapshot_date, s.net_asset_value
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id AND s.is_complete
         ORDER BY s.snapshot_date DESC
         LIMIT 1) AS l ON true
 WHERE (l.snapshot_date IS NOT NULL AND p.equity_balance IS DISTINCT FROM l.net_asset_value)
    OR (p.equity_as_of IS NOT NULL AND p.equity_as_of IS DISTINCT FROM l.snapshot_date)
 ORDER BY p.id;
