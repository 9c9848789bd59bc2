-- chain_skips_price_date: holes in a chain: complete snapshots whose previous
-- complete snapshot is not on the price date just before them (a price date,
-- a date with at least one close in market_prices, lies between the two with
-- no complete snapshot of the portfolio). How it happens: a date's closes
-- arrived after the later dates were computed across it (a late feed; one
-- stray close on a weekend makes that day a price date too), or a snapshot in
-- the middle of a chain was deleted by hand (and `pnl repair` then replayed
-- the chain across the gap). Runs only extend chains, so none fills a hole.
-- The first snapshot of a chain has nothing before it and is not checked.
-- A row means: the portfolio has no snapshot on missing_dates (the first is
-- missing_date), and its snapshot on snapshot_date was computed from the one
-- on previous_date, across them.
-- What to do: if missing_date should not be a price date at all (a stray close
-- on a weekend or holiday), delete that close from market_prices: the hole is
-- gone. Otherwise rebuild the chain from the first missing date, naming the
-- rows' portfolios (one --portfolio each; never the whole book: an undo without
-- --portfolio also removes the history of portfolios whose chains start after
-- that date, and a run does not compute dates before a chain's start):
--   pnl batch undo --from <missing_date> --portfolio <portfolio_id> ... --dry-run, then --yes,
--   then pnl batch run --date latest (it computes every price date from there).
-- Bounded by the setting pnl.verify_since like broken_equity_chain (see its
-- header): only snapshots on or after it are checked, each against its previous
-- complete snapshot however old. Unset: every snapshot (one window over the
-- whole table). The price calendar is one loose index scan of market_prices.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/chain_skips_price_date.sql
WITH RECURSIVE bound AS MATERIALIZED (
    SELECT NULLIF(current_setting('pnl.verify_since', true), '')::date AS since
),
chain AS (
    -- the full check: the whole table, one window per chain (skipped when bounded)
    SELECT s.portfolio_id, s.snapshot_date,
           lag(s.snapshot_date) OVER w AS previous_date
      FROM portfolio_snapshots AS s
     WHERE s.is_complete
       AND (SELECT b.since FROM bound AS b) IS NULL
    WINDOW w AS (PARTITION BY s.portfolio_id ORDER BY s.snapshot_date)
    UNION ALL
    -- the bounded check: each portfolio's snapshots on or after the bound, the
    -- first against its latest complete snapshot before the bound
    SELECT p.id, s.snapshot_date,
           COALESCE(lag(s.snapshot_date) OVER w, before.snapshot_date)
      FROM bound AS b
      JOIN portfolios AS p ON b.since IS NOT NULL
      JOIN LATERAL (
            SELECT ps.snapshot_date
              FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = p.id AND ps.snapshot_date >= b.since AND ps.is_complete
            OFFSET 0) AS s ON true
      LEFT JOIN LATERAL (
            SELECT pv.snapshot_date
              FROM portfolio_snapshots AS pv
             WHERE pv.portfolio_id = p.id AND pv.snapshot_date < b.since AND pv.is_complete
             ORDER BY pv.snapshot_date DESC
             LIMIT 1) AS before ON true
    WINDOW w AS (PARTITION BY p.id ORDER BY s.snapshot_date)
),
price_dates(d) AS (
    -- every price date, one probe each (a loose scan of ix_market_prices_price_date)
    SELECT min(mp.price_date) FROM market_prices AS mp
    UNION ALL
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp WHERE mp.price_date > k.d)
      FROM price_dates AS k
     WHERE k.d IS NOT NULL
),
calendar AS MATERIALIZED (
    SELECT k.d, row_number() OVER (ORDER BY k.d) AS n
      FROM price_dates AS k
     WHERE k.d IS NOT NULL
),
skips AS (
    SELECT c.portfolio_id, c.previous_date, c.snapshot_date
      FROM chain AS c
      LEFT JOIN calendar AS kp ON kp.d = c.previous_date
      LEFT JOIN calendar AS kc ON kc.d = c.snapshot_date
     WHERE c.previous_date IS NOT NULL
       AND CASE WHEN kp.n IS NOT NULL AND kc.n IS NOT NULL THEN kc.n - kp.n > 1
                -- a legacy snapshot on a date without closes: probe the price dates between
                ELSE EXISTS (SELECT 1 FROM market_prices AS mp
                              WHERE mp.price_date > c.previous_date
                                AND mp.price_date < c.snapshot_date) END
)
SELECT s.portfolio_id, m.dates[1] AS missing_date, m.dates AS missing_dates,
       s.previous_date, s.snapshot_date
  FROM skips AS s
 CROSS JOIN LATERAL (
        SELECT array_agg(k.d ORDER BY k.d) AS dates
          FROM calendar AS k
         WHERE k.d > s.previous_date
           AND k.d < s.snapshot_date) AS m
 ORDER BY s.portfolio_id, s.snapshot_date;
