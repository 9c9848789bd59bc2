-- duplicate_snapshots: (portfolio_id, snapshot_date) groups with more than one
-- snapshot row. Works before and after the idempotency migration.
-- A row means: that portfolio has several snapshots for that date (the legacy
-- double-apply bug); its equity chain from that date on is suspect.
-- What to do: `pnl dedupe --dry-run`, then `pnl dedupe`, then `pnl verify`.
-- Bounded by the setting pnl.verify_since (`pnl verify --since DATE`, see
-- sql/checks/set_verify_since.sql): only dates on or after it, and nothing
-- at all while uq_portfolio_snapshot_date is in place (the database itself
-- refuses a second row then). Unset: every row, whatever the constraints.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/duplicate_snapshots.sql
WITH bound AS MATERIALIZED (
    SELECT NULLIF(current_setting('pnl.verify_since', true), '')::date AS since
)
SELECT s.portfolio_id, s.snapshot_date, count(*) AS rows,
       array_agg(s.id ORDER BY s.created_at, s.id) AS snapshot_ids,
       array_agg(s.net_asset_value ORDER BY s.created_at, s.id) AS navs
  FROM portfolio_snapshots AS s
 WHERE s.snapshot_date >= COALESCE((SELECT b.since FROM bound AS b), '-infinity')
   AND NOT ((SELECT b.since FROM bound AS b) IS NOT NULL
            AND EXISTS (SELECT 1 FROM pg_constraint AS c
                         WHERE c.conname = 'uq_portfolio_snapshot_date'
                           AND c.conrelid = 'portfolio_snapshots'::regclass
                           AND c.contype = 'u' AND c.convalidated))
 GROUP BY s.portfolio_id, s.snapshot_date
HAVING count(*) > 1
 ORDER BY s.portfolio_id, s.snapshot_date;
