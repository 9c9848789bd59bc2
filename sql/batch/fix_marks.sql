-- fix_marks: fix the valuation marks of one date, once: for every symbol held
-- that day (some position open at $1) that has no mark for $1 yet, the latest
-- close <= $1 (price_date: its date; earlier than $1 = carried forward), in ONE
-- set-based INSERT ... ON CONFLICT DO NOTHING. The first run of a date fixes
-- them; every later run of the date (and a concurrent one) keeps them, so all
-- runs of a date value with the same closes, and the next date starts from
-- them (sql/batch/finalize_claimed.sql reads marks, not market_prices).
-- A close <= 0 is never fixed: finalize fails its portfolios with bad_price.
-- A symbol with no close at all <= $1 gets no mark: missing_price.
-- Called by a run for each date it covers, in date order, before any chunk
-- finalizes that date; by a repair for each date it replays.
--
-- $1 mark date (date)   $2 the run fixing them (bigint; recorded)
-- Returns one row: fixed bigint (marks this call inserted),
--   stale bigint (marks of $1, old and new, carried forward: price_date < $1),
--   stale_names text[] (the first 20 of those, by name)
WITH RECURSIVE symbols(symbol) AS (
    SELECT (SELECT min(p.symbol) FROM positions AS p)
    UNION ALL
    SELECT (SELECT min(p.symbol) FROM positions AS p WHERE p.symbol > y.symbol)
      FROM symbols AS y
     WHERE y.symbol IS NOT NULL
),
unmarked AS (
    -- probes only (see batch/check_run_prices.sql): LATERAL ... LIMIT 1, scalar subqueries
    SELECT y.symbol
      FROM symbols AS y
      JOIN LATERAL (
            SELECT 1 AS one FROM positions AS p
             WHERE p.symbol = y.symbol AND p.entry_date <= $1::date
               AND (p.exit_date IS NULL OR p.exit_date > $1::date)
             LIMIT 1) AS open ON true
     WHERE y.symbol IS NOT NULL
       AND (SELECT vm.price_date FROM valuation_marks AS vm
             WHERE vm.mark_date = $1::date AND vm.symbol = y.symbol) IS NULL
),
latest AS (
    SELECT u.symbol, c.close_price, c.price_date
      FROM unmarked AS u
      JOIN LATERAL (
            SELECT mp.close_price, mp.price_date
              FROM market_prices AS mp
             WHERE mp.symbol = u.symbol AND mp.price_date <= $1::date
             ORDER BY mp.price_date DESC
             LIMIT 1) AS c ON true
     WHERE c.close_price > 0
),
fixed AS (
    INSERT INTO valuation_marks (mark_date, symbol, close_price, price_date, batch_run_id)
    SELECT $1::date, l.symbol, l.close_price, l.price_date, $2::bigint
      FROM latest AS l
     ORDER BY l.symbol
        ON CONFLICT (mark_date, symbol) DO NOTHING
    RETURNING symbol, price_date
),
stale AS (
    SELECT f.symbol FROM fixed AS f WHERE f.price_date < $1::date
    UNION ALL
    SELECT vm.symbol FROM valuation_marks AS vm WHERE vm.mark_date = $1::date AND vm.price_date < $1::date
)
SELECT (SELECT count(*) FROM fixed) AS fixed,
       (SELECT count(*) FROM stale) AS stale,
       ARRAY(SELECT s.symbol FROM stale AS s ORDER BY s.symbol LIMIT 20)::text[] AS stale_names;
