-- find_mark_portfolios: the portfolios a re-fixed valuation mark changes, and
-- the date each one's replay starts from: those holding the symbol on the mark
-- date (a position open then) with a complete snapshot on that date or on the
-- next price date (whose start price is the mark). The same rule as
-- portfolios_affected in sql/verify/marks_differ_from_prices.sql.
--
-- $1 mark dates (date[])   $2 symbols (text[], aligned with $1)
-- Returns one row per portfolio: portfolio_id, from_date (its earliest mark date)
SELECT p.portfolio_id, min(m.mark_date) AS from_date
  FROM unnest($1::date[], $2::text[]) AS m(mark_date, symbol)
  JOIN positions AS p
    ON p.symbol = m.symbol
   AND p.entry_date <= m.mark_date
   AND (p.exit_date IS NULL OR p.exit_date > m.mark_date)
 WHERE EXISTS (SELECT 1 FROM portfolio_snapshots AS s
                WHERE s.portfolio_id = p.portfolio_id AND s.is_complete
                  AND s.snapshot_date >= m.mark_date
                  AND s.snapshot_date <= COALESCE(
                        (SELECT min(mp.price_date) FROM market_prices AS mp
                          WHERE mp.price_date > m.mark_date), m.mark_date))
 GROUP BY p.portfolio_id
 ORDER BY p.portfolio_id;
