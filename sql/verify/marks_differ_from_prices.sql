-- marks_differ_from_prices: valuation marks that are no longer what
-- market_prices says: the close a date was valued with (its mark) differs from
-- the close it would be fixed with now (the latest close <= the date):
--   corrected     the same day's close now has another value;
--   arrived_late  the mark was carried forward from an earlier close, and a
--                 close for the date (or a later one up to it) was loaded since;
--   deleted       the close the mark came from is gone (current_close: what is
--                 left, maybe nothing).
-- A mark no complete snapshot was valued with (portfolios_affected 0) is not
-- listed: nothing is wrong until a portfolio uses it, and then it is.
-- Needs migration 0008 (valuation_marks).
-- A row means: the portfolios holding the symbol on mark_date
-- (portfolios_affected: those with a complete snapshot on that date or the next
-- price date) were valued with the mark. Their NAV on mark_date, and the split
-- of P&L between that date and the next, differ from what the current close
-- gives by units x (current_close - mark); their NAVs on later dates do not
-- (each date starts from the previous date's mark, so the move is counted on
-- the next date), unless mark_date is the last date they have.
-- What to do: `pnl repair --from <mark_date> --dry-run`, then without
-- --dry-run (or `pnl repair --all-broken`): it re-fixes the marks on and after
-- that date from market_prices (the old ones archived in
-- valuation_mark_repair_audit) and replays the affected portfolios.
-- Bounded by the setting pnl.verify_since (`pnl verify --since DATE`, see
-- sql/checks/set_verify_since.sql): only marks on or after it (a range scan
-- of pk_valuation_marks). Unset: every mark.
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/marks_differ_from_prices.sql
WITH differing AS MATERIALIZED (
    -- one backward probe of pk_market_prices per mark; the portfolios are
    -- counted only for the marks that differ (MATERIALIZED: never per mark)
    SELECT vm.mark_date, vm.symbol, vm.close_price AS mark, vm.price_date AS mark_price_date,
           cur.close_price AS current_close, cur.price_date AS current_price_date,
           CASE WHEN cur.price_date = vm.price_date THEN 'corrected'
                WHEN cur.price_date > vm.price_date THEN 'arrived_late'
                ELSE 'deleted' END AS kind
      FROM valuation_marks AS vm
      LEFT JOIN LATERAL (
            SELECT mp.close_price, mp.price_date
              FROM market_prices AS mp
             WHERE mp.symbol = vm.symbol AND mp.price_date <= vm.mark_date
             ORDER BY mp.price_date DESC
             LIMIT 1) AS cur ON true
     WHERE vm.mark_date >= COALESCE(NULLIF(current_setting('pnl.verify_since', true), '')::date, '-infinity')
       AND (cur.price_date IS DISTINCT FROM vm.price_date
            OR cur.close_price IS DISTINCT FROM vm.close_price)
),
counted AS (
    SELECT d.*,
           (SELECT count(DISTINCT p.portfolio_id)
              FROM positions AS p
             WHERE p.symbol = d.symbol
               AND p.entry_date <= d.mark_date
               AND (p.exit_date IS NULL OR p.exit_date > d.mark_date)
               AND EXISTS (SELECT 1 FROM portfolio_snapshots AS s
                            WHERE s.portfolio_id = p.portfolio_id AND s.is_complete
                              AND s.snapshot_date >= d.mark_date
                              AND s.snapshot_date <= COALESCE(
                                    (SELECT min(mp.price_date) FROM market_prices AS mp
                                      WHERE mp.price_date > d.mark_date), d.mark_date))) AS portfolios_affected
      FROM differing AS d
)
SELECT c.mark_date, c.symbol, c.mark, c.mark_price_date, c.current_close, c.current_price_date, c.kind,
       c.portfolios_affected
  FROM counted AS c
 WHERE c.portfolios_affected > 0
 ORDER BY c.mark_date, c.symbol;
