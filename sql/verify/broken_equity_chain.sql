-- broken_equity_chain: complete snapshots whose NAV does not follow from the
-- portfolio's previous complete snapshot (LAG over each portfolio's chain):
--   opening_equity, where recorded, differs from the previous NAV; or
--   NAV differs from previous NAV + daily_pnl + the capital flows in
--   (previous date, this date] (from capital_flows, so legacy rows that never
--   recorded their flow are checked too).
-- The first snapshot of a chain has no previous one and is not checked.
-- Needs the idempotency migration (is_complete).
-- A row means: P&L was applied twice (or a row was edited) on or before this
-- date; every later NAV of the portfolio inherits the error.
-- What to do: `pnl repair --portfolio <portfolio_id> --from <snapshot_date>
-- --dry-run`, then without --dry-run (or `pnl repair --all-broken`).
-- Bounded by the setting pnl.verify_since (`pnl verify --since DATE`, see
-- sql/checks/set_verify_since.sql): only snapshots on or after it are checked
-- (each against its previous complete snapshot, however old), one index range
-- scan and one backward probe per portfolio: the cost follows the dates
-- checked, not the table's depth. Unset: every snapshot (one window
-- over the whole table).
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/broken_equity_chain.sql
WITH bound AS MATERIALIZED (
    SELECT NULLIF(current_setting('pnl.verify_since', true), '')::date AS since
),
chain AS (
    -- the full check: the whole table, one window per chain (skipped when bounded)
    SELECT s.id, s.portfolio_id, s.snapshot_date, s.opening_equity, s.daily_pnl, s.net_asset_value,
           lag(s.snapshot_date) OVER w    AS previous_date,
           lag(s.net_asset_value) OVER w  AS previous_nav
      FROM portfolio_snapshots AS s
     WHERE s.is_complete
       AND (SELECT b.since FROM bound AS b) IS NULL
    WINDOW w AS (PARTITION BY s.portfolio_id ORDER BY s.snapshot_date)
    UNION ALL
    -- the bounded check: each portfolio's snapshots on or after the bound, each
    -- against the one before it (LAG); the first against the portfolio's latest
    -- complete snapshot before the bound (one backward probe per portfolio)
    SELECT s.id, p.id, s.snapshot_date, s.opening_equity, s.daily_pnl, s.net_asset_value,
           CASE WHEN lag(s.snapshot_date) OVER w IS NULL THEN before.snapshot_date
                ELSE lag(s.snapshot_date) OVER w END,
           CASE WHEN lag(s.snapshot_date) OVER w IS NULL THEN before.net_asset_value
                ELSE lag(s.net_asset_value) OVER w END
      FROM bound AS b
      JOIN portfolios AS p ON b.since IS NOT NULL
      JOIN LATERAL (
            SELECT ps.id, ps.snapshot_date, ps.opening_equity, ps.daily_pnl, ps.net_asset_value
              FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = p.id AND ps.snapshot_date >= b.since AND ps.is_complete
            OFFSET 0) AS s ON true
      LEFT JOIN LATERAL (
            SELECT pv.snapshot_date, pv.net_asset_value
              FROM portfolio_snapshots AS pv
             WHERE pv.portfolio_id = p.id AND pv.snapshot_date < b.since AND pv.is_complete
             ORDER BY pv.snapshot_date DESC
             LIMIT 1) AS before ON true
    WINDOW w AS (PARTITION BY p.id ORDER BY s.snapshot_date)
),
checked AS (
    SELECT c.*,
           round(COALESCE((SELECT sum(f.amount) FROM capital_flows AS f
                            WHERE f.portfolio_id = c.portfolio_id
                              AND f.flow_date > c.previous_date
                              AND f.flow_date <= c.snapshot_date), 0), 4) AS flows
      FROM chain AS c
     WHERE c.previous_date IS NOT NULL
)
SELECT k.portfolio_id, k.snapshot_date, k.previous_date, k.previous_nav, k.opening_equity,
       k.daily_pnl, k.flows, k.net_asset_value,
       k.previous_nav + k.daily_pnl + k.flows AS expected_nav
  FROM checked AS k
 WHERE (k.opening_equity IS NOT NULL AND k.opening_equity <> k.previous_nav)
    OR k.net_asset_value IS DISTINCT FROM k.previous_nav + k.daily_pnl + k.flows
 ORDER BY k.portfolio_id, k.snapshot_date;
