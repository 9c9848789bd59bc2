-- check_run_prices: before a run writes anything, for every price date it may
-- cover, how many of the symbols held that day have no valuation mark yet and
-- no close ON that date but an earlier one (the ones the run would carry
-- forward: stale): the input of the --max-stale decision (pnl/batch.py).
-- A symbol with no close at all up to the date is not stale: it fails the
-- portfolios holding it (missing_price), whatever --max-stale says.
--
-- The dates: every price date after the earliest chain end of the selected
-- portfolios (each one's latest complete snapshot; a portfolio without one:
-- the day before the start date $3), up to $1. A chain's end is read from
-- portfolios.equity_as_of (migration 0012: set with equity, in the same
-- statement as the snapshot; cleared by a writer that does not set it, and by
-- migration 0013's triggers when that snapshot is deleted, truncated or made
-- incomplete: snapshots removed behind pnl's back are marked again); one
-- backward probe of uq_portfolio_snapshot_date where it is NULL. Then a
-- loose index scan of ix_market_prices_price_date: one probe per date.
-- (This only decides which dates' prices are checked and marked; the chunk
-- statements that write find each chain's end by probing, whatever this says.)
-- Held on D: some position (of any portfolio) is open at D: entry_date <= D
-- and (exit_date null or after D). The symbols are walked with a loose index
-- scan of ix_positions_symbol (one probe per symbol). A symbol whose mark for D
-- is already fixed (an earlier run of D) is never refused again.
--
-- $1 last date (date)   $2 selected portfolio ids (bigint[]; NULL = all)
-- $3 start date of a portfolio without a complete snapshot (date)
-- Returns one row per price date the run may cover, ascending:
--   mark_date date, held bigint, unmarked bigint (held, no mark yet),
--   stale bigint (held, no mark yet, no close on mark_date, an earlier one),
--   stale_names text[] (the first 20 of those, by name)
WITH RECURSIVE ends AS (
    SELECT COALESCE(p.equity_as_of,
                    (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                      WHERE s.portfolio_id = p.id AND s.is_complete
                      ORDER BY s.snapshot_date DESC LIMIT 1),
                    $3::date - 1) AS chain_end
      FROM portfolios AS p
     WHERE ($2::bigint[] IS NULL OR p.id = ANY($2::bigint[]))
),
calendar(d) AS (
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > (SELECT min(e.chain_end) FROM ends AS e)
               AND mp.price_date <= $1::date)
    UNION ALL
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > k.d AND mp.price_date <= $1::date)
      FROM calendar AS k
     WHERE k.d IS NOT NULL
),
symbols(symbol) AS (
    SELECT (SELECT min(p.symbol) FROM positions AS p)
    UNION ALL
    SELECT (SELECT min(p.symbol) FROM positions AS p WHERE p.symbol > y.symbol)
      FROM symbols AS y
     WHERE y.symbol IS NOT NULL
),
held AS (
    -- Probes only, by construction: a LATERAL ... LIMIT 1 per (date, symbol)
    -- for an open position (EXISTS here became a hash semi-join over every
    -- position), scalar subqueries for the rest (never hashed over market_prices).
    SELECT k.d, y.symbol,
           (SELECT vm.price_date FROM valuation_marks AS vm
             WHERE vm.mark_date = k.d AND vm.symbol = y.symbol) IS NOT NULL AS marked,
           (SELECT mp.price_date FROM market_prices AS mp
             WHERE mp.symbol = y.symbol AND mp.price_date = k.d) IS NOT NULL AS on_date,
           (SELECT mp.price_date FROM market_prices AS mp
             WHERE mp.symbol = y.symbol AND mp.price_date < k.d
             ORDER BY mp.price_date DESC LIMIT 1) IS NOT NULL AS earlier
      FROM calendar AS k
      JOIN symbols AS y ON k.d IS NOT NULL AND y.symbol IS NOT NULL
      JOIN LATERAL (
            SELECT 1 AS one FROM positions AS p
             WHERE p.symbol = y.symbol AND p.entry_date <= k.d
               AND (p.exit_date IS NULL OR p.exit_date > k.d)
             LIMIT 1) AS open ON true
)
SELECT k.d AS mark_date,
       count(h.symbol) AS held,
       count(h.symbol) FILTER (WHERE NOT h.marked) AS unmarked,
       count(h.symbol) FILTER (WHERE NOT h.marked AND NOT h.on_date AND h.earlier) AS stale,
       (array_agg(h.symbol ORDER BY h.symbol)
            FILTER (WHERE NOT h.marked AND NOT h.on_date AND h.earlier))[1:20] AS stale_names
  FROM calendar AS k
  LEFT JOIN held AS h ON h.d = k.d
 WHERE k.d IS NOT NULL
 GROUP BY k.d
 ORDER BY k.d;
