-- duplicate_snapshots: (portfolio_id, snapshot_date) groups with more than one
-- snapshot row. Works before and after the idempotency migration.
-- A row means: that portfolio has several snapshots for that date (the legacy
-- double-apply bug); its equity chain from that date on is suspect.
-- What to do: `pnl dedupe --dry-run`, then `pnl dedupe`, then `pnl verify`.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/duplicate_snapshots.sql
SELECT s.portfolio_id, s.snapshot_date, count(*) AS rows,
       array_agg(s.id ORDER BY s.created_at, s.id) AS snapshot_ids,
       array_agg(s.net_asset_value ORDER BY s.created_at, s.id) AS navs
  FROM portfolio_snapshots AS s
 GROUP BY s.portfolio_id, s.snapshot_date
HAVING count(*) > 1
 ORDER BY s.portfolio_id, s.snapshot_date;
