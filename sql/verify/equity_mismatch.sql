-- equity_mismatch: portfolios whose equity_balance is not the NAV of their
-- latest complete snapshot. pnl sets equity to that NAV in the same
-- transaction as the snapshot, so a row means equity was changed by something
-- else: the legacy `equity_balance += daily_pnl`, or a manual edit.
-- Needs the idempotency migration (is_complete).
-- What to do: `pnl repair --portfolio <portfolio_id> --from <latest_snapshot_date>`
-- (or `pnl repair --all-broken`), which recomputes from the last good snapshot.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/equity_mismatch.sql
SELECT p.id AS portfolio_id, p.equity_balance, l.snapshot_date AS latest_snapshot_date,
       l.net_asset_value AS latest_nav, p.equity_balance - l.net_asset_value AS difference
  FROM portfolios AS p
  JOIN LATERAL (
        SELECT s.snapshot_date, s.net_asset_value
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id AND s.is_complete
         ORDER BY s.snapshot_date DESC
         LIMIT 1) AS l ON true
 WHERE p.equity_balance IS DISTINCT FROM l.net_asset_value
 ORDER BY p.id;
