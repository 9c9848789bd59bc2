-- snapshot_values: the P&L rule, as the WITH clause that ends in `computed`:
-- one row per portfolio of $3 with every column of its snapshot for date $2,
-- or why it cannot be computed (failure_kind, failure_detail). Not a
-- statement of its own: batch/finalize_claimed.sql (a claimed slot is
-- UPDATEd) and batch/insert_complete.sql (a free slot is INSERTed complete)
-- include it with `-- @include batch/snapshot_values`, so the rule is written
-- once. Run either after batch/lock_portfolios.sql in the same transaction, so
-- that it sees every earlier date of these portfolios finished or not, and
-- after batch/plan_chunk_statements.sql (see there why).
--
-- Rules, for portfolio p on date D ($2):
--   B       = date of p's latest complete snapshot before D (with a NAV);
--             if none, the latest price date before D (any symbol).
--   alive   = positions with entry_date <= D and (exit_date is null or > B).
--   pnl     = sum of quantity * multiplier * (end - start), where
--             start = entry_price if entry_date > B, else B's valuation mark
--                     (where B has none: the first snapshot of a chain, legacy
--                     history: the latest close <= B; entry_price if the symbol
--                     has no close <= B),
--             end   = exit_price if exit_date <= D, else D's valuation mark.
--             Marks (valuation_marks) are fixed once per (date, symbol) by the
--             first run of the date (batch/fix_marks.sql, called before any
--             finalize of D), so a close that arrives or changes later never
--             changes what D was valued with, nor the next date's start: the
--             sum of a held position's daily P&L over any stretch of dates is
--             units x (last mark - first mark).
--   opening = previous complete snapshot's NAV, else portfolios.equity_balance.
--   flow    = sum of capital_flows in (B, D].
--   NAV     = opening + round(pnl, 4) + flow   (set, never added to a balance)
--   return  = pnl / opening (NULL when opening is 0); cumulative = prev + pnl.
--   exposure from positions open at D (exit_date null or > D) at D's mark:
--   long_value = sum of positive values, short_value = sum of negative values
--   (a negative number), gross = long - short, net = long + short;
--   num_positions = positions open at D with a non-zero quantity.
--
-- failure_kind, for a portfolio that cannot be computed now:
--   'missing_price'      an alive position needs a close <= D and has none
--                        (detail: the symbols);
--   'bad_price'          the close it would be valued with is <= 0 (detail:
--                        the symbols; such a close is never fixed as a mark);
--   'missing_mark'       D's mark of a held symbol is not fixed although a
--                        close exists (a position added after this run fixed
--                        D's marks; detail: the symbols): the next run fixes it;
--   'later_snapshot'     it has a complete snapshot after D (detail: that date):
--                        finishing D now would fork its equity chain (D is
--                        before its chain now: another run started it later);
--   'earlier_unfinished' a date after its previous complete snapshot and
--                        before D is claimed but unfinished (detail: that
--                        date): D's opening equity is not known yet;
--   'missing_earlier'    (only when $4) a price date lies between its previous
--                        complete snapshot and D (detail: that date): D would
--                        be computed across a hole in the chain.
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- $4 gap-free (boolean): refuse to compute across a missing price date (the
--    batch; a repair replays an existing chain as it is, holes included)
-- Yields (as CTE `computed`): portfolio_id, snapshot_id (the existing slot of
--   ($3, $2), NULL if none), opening_equity, daily_pnl, capital_flow,
--   net_asset_value, daily_return, cumulative_pnl, long_value, short_value,
--   gross_exposure, net_exposure, num_positions, fence_run_id, fence_complete,
--   failure_kind, failure_detail, prev_date (the previous complete snapshot's
--   date the values are computed from; NULL: none, a chain's first snapshot).
WITH claimed AS (
    -- Driven by the ids, not by a scan of the claim rows: unnest() of a bound
    -- array is estimated exactly, and each slot is one probe of its unique key.
    -- (Claim rows are too new for the statistics to know them; a plan built
    -- on "NOT is_complete AND batch_run_id = $1" expects one row.) The fence
    -- is applied where rows are written: finalized and released re-check
    -- batch_run_id and is_complete.
    SELECT u.id AS portfolio_id,
           (SELECT slot.id FROM portfolio_snapshots AS slot
             WHERE slot.portfolio_id = u.id AND slot.snapshot_date = $2::date) AS snapshot_id
      FROM unnest($3::bigint[]) AS u(id)
),
base AS (
    SELECT c.portfolio_id, c.snapshot_id,
           COALESCE(prev.snapshot_date,
                    (SELECT max(mp.price_date) FROM market_prices AS mp
                      WHERE mp.price_date < $2::date)) AS b,
           COALESCE(prev.net_asset_value,
                    (SELECT pf.equity_balance FROM portfolios AS pf WHERE pf.id = c.portfolio_id)) AS opening_equity,
           COALESCE(prev.cumulative_pnl, 0) AS prev_cumulative,
           prev.snapshot_date AS prev_date,
           (SELECT min(ps.snapshot_date) FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = c.portfolio_id AND ps.snapshot_date > $2::date
               AND ps.is_complete) AS later_complete,
           (SELECT max(ps.snapshot_date) FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = c.portfolio_id AND ps.snapshot_date < $2::date
               AND ps.snapshot_date > COALESCE(prev.snapshot_date, '-infinity')
               AND NOT ps.is_complete) AS earlier_unfinished,
           CASE WHEN $4::boolean AND prev.snapshot_date IS NOT NULL THEN
                (SELECT min(mp.price_date) FROM market_prices AS mp
                  WHERE mp.price_date > prev.snapshot_date AND mp.price_date < $2::date) END AS missing_earlier
      FROM claimed AS c
      LEFT JOIN LATERAL (
            SELECT ps.snapshot_date, ps.net_asset_value, ps.cumulative_pnl
              FROM portfolio_snapshots AS ps
             WHERE ps.portfolio_id = c.portfolio_id
               AND ps.snapshot_date < $2::date
               AND ps.is_complete
               AND ps.net_asset_value IS NOT NULL
             ORDER BY ps.snapshot_date DESC
             LIMIT 1) AS prev ON true
),
alive AS (
    -- One index lookup of positions per portfolio of the chunk, by
    -- construction (LATERAL ... OFFSET 0 is never flattened into a join whose
    -- plan would depend on row estimates).
    SELECT b.portfolio_id, b.b, p.symbol,
           p.quantity * p.multiplier AS units,
           p.entry_date, p.entry_price, p.exit_date, p.exit_price
      FROM base AS b
      JOIN LATERAL (
            SELECT pos.symbol, pos.quantity, pos.multiplier, pos.entry_date, pos.entry_price,
                   pos.exit_date, pos.exit_price
              FROM positions AS pos
             WHERE pos.portfolio_id = b.portfolio_id
               AND pos.entry_date <= $2::date
               AND (pos.exit_date IS NULL OR b.b IS NULL OR pos.exit_date > b.b)
            OFFSET 0) AS p ON true
),
closes AS MATERIALIZED (
    -- One set of lookups per (symbol, B) held in the chunk: D's mark and B's
    -- mark, each a probe of pk_valuation_marks; market_prices is read only
    -- where B has no mark (the latest close <= B), or to say why D has none.
    SELECT m.symbol, m.b, m.close_b, m.close_d,
           CASE WHEN m.close_d IS NULL THEN
                (SELECT mp.close_price FROM market_prices AS mp
                  WHERE mp.symbol = m.symbol AND mp.price_date <= $2::date
                  ORDER BY mp.price_date DESC LIMIT 1) END AS unmarked_close_d
      FROM (SELECT k.symbol, k.b,
                   COALESCE((SELECT vm.close_price FROM valuation_marks AS vm
                              WHERE vm.mark_date = k.b AND vm.symbol = k.symbol),
                            (SELECT mp.close_price FROM market_prices AS mp
                              WHERE mp.symbol = k.symbol AND mp.price_date <= k.b
                              ORDER BY mp.price_date DESC LIMIT 1)) AS close_b,
                   (SELECT vm.close_price FROM valuation_marks AS vm
                     WHERE vm.mark_date = $2::date AND vm.symbol = k.symbol) AS close_d
              FROM (SELECT a.symbol, a.b FROM alive AS a GROUP BY a.symbol, a.b) AS k
            OFFSET 0) AS m
),
valued AS (
    SELECT a.portfolio_id, a.symbol, a.units,
           CASE WHEN a.b IS NULL OR a.entry_date > a.b THEN a.entry_price
                ELSE COALESCE(c.close_b, a.entry_price) END               AS start_price,
           CASE WHEN a.exit_date <= $2::date THEN a.exit_price
                ELSE c.close_d END                                        AS end_price,
           (a.exit_date IS NULL OR a.exit_date > $2::date)                AS open_at_d,
           -- why a price is unusable, by precedence (NULL: it is fine):
           -- 1 missing_price, 2 bad_price, 3 missing_mark
           CASE WHEN (a.exit_date IS NULL OR a.exit_date > $2::date) AND c.close_d IS NULL THEN
                     CASE WHEN c.unmarked_close_d IS NULL THEN 1
                          WHEN c.unmarked_close_d <= 0 THEN 2
                          ELSE 3 END
                WHEN a.b IS NOT NULL AND a.entry_date <= a.b AND c.close_b <= 0 THEN 2
           END                                                            AS price_problem
      FROM alive AS a
      JOIN closes AS c                       -- B is NULL when no price predates D
        ON c.symbol = a.symbol AND COALESCE(c.b, '-infinity') = COALESCE(a.b, '-infinity')
),
per_portfolio AS (
    SELECT v.portfolio_id,
           sum(v.units * (v.end_price - v.start_price))                    AS pnl,
           sum(v.units * v.end_price) FILTER (WHERE v.open_at_d AND v.units > 0) AS long_value,
           sum(v.units * v.end_price) FILTER (WHERE v.open_at_d AND v.units < 0) AS short_value,
           count(*) FILTER (WHERE v.open_at_d AND v.units <> 0)            AS num_positions,
           -- A plain array_agg leaves the planner free to hash (DISTINCT or ORDER BY
           -- inside an aggregate forces a sort of every row of the chunk); it picks
           -- sort + group here, and hashing measured no faster (docs/scaling.md 5.0000).
           min(v.price_problem)                                            AS price_problem,
           array_agg(v.symbol) FILTER (WHERE v.price_problem IS NOT NULL)  AS problem_symbols,
           array_agg(v.price_problem) FILTER (WHERE v.price_problem IS NOT NULL) AS problem_codes
      FROM valued AS v
     GROUP BY v.portfolio_id
),
flows AS (
    -- The chunk's capital flows in (B, D]: one scan of ix_capital_flows_portfolio_date for
    -- the whole chunk (its ids as one array, dates from the chunk's earliest B), then a hash
    -- join. (A probe per portfolio, a LATERAL sum, cost ~20 ms per 5,000 portfolios in
    -- executor start-ups; a scan of the whole table, or of each portfolio's flows from its
    -- first, would grow with their history. This one reads each portfolio's flows from the
    -- chunk's oldest B: the batch writes a statement's portfolios on one date, so their B is
    -- normally one date; one with an old or no B widens the range for the statement.)
    SELECT b.portfolio_id, sum(f.amount) AS amount
      FROM capital_flows AS f
      JOIN base AS b ON b.portfolio_id = f.portfolio_id
     WHERE f.portfolio_id = ANY($3::bigint[])
       AND f.flow_date <= $2::date
       AND f.flow_date > (SELECT CASE WHEN bool_or(x.b IS NULL) THEN '-infinity'::date ELSE min(x.b) END
                            FROM base AS x)
       AND (b.b IS NULL OR f.flow_date > b.b)
     GROUP BY b.portfolio_id
),
outcome AS (
    SELECT b.portfolio_id,
           b.opening_equity,
           round(COALESCE(pp.pnl, 0), 4)                   AS daily_pnl,
           round(COALESCE(fl.amount, 0), 4)                AS capital_flow,
           b.prev_cumulative,
           b.prev_date,
           round(COALESCE(pp.long_value, 0), 4)            AS long_value,
           round(COALESCE(pp.short_value, 0), 4)           AS short_value,
           COALESCE(pp.num_positions, 0)                   AS num_positions,
           b.snapshot_id,
           $1::bigint AS fence_run_id,        -- the fence's constants, as columns: see finalized
           false      AS fence_complete,
           CASE WHEN b.later_complete IS NOT NULL THEN 'later_snapshot'
                WHEN b.earlier_unfinished IS NOT NULL THEN 'earlier_unfinished'
                WHEN b.missing_earlier IS NOT NULL THEN 'missing_earlier'
                WHEN pp.price_problem IS NOT NULL THEN
                     (ARRAY['missing_price', 'bad_price', 'missing_mark'])[pp.price_problem] END AS failure_kind,
           COALESCE(b.later_complete::text, b.earlier_unfinished::text, b.missing_earlier::text,
                    -- the symbols with the failing problem (the arrays are aligned), by name;
                    -- (the CASE: a subquery run only for a portfolio with a price problem)
                    CASE WHEN pp.price_problem IS NOT NULL THEN
                         array_to_string(ARRAY(SELECT DISTINCT m.symbol
                                                 FROM unnest(pp.problem_symbols, pp.problem_codes) AS m(symbol, code)
                                                WHERE m.code = pp.price_problem
                                                ORDER BY m.symbol), ',') END)
                                                           AS failure_detail
      FROM base AS b
      LEFT JOIN per_portfolio AS pp ON pp.portfolio_id = b.portfolio_id
      LEFT JOIN flows AS fl ON fl.portfolio_id = b.portfolio_id
),
computed AS (
    -- The snapshot's derived columns, once, for whichever statement writes them.
    SELECT o.*,
           o.opening_equity + o.daily_pnl + o.capital_flow          AS net_asset_value,
           CASE WHEN o.opening_equity = 0 THEN NULL
                ELSE round(o.daily_pnl / o.opening_equity, 10) END  AS daily_return,
           o.prev_cumulative + o.daily_pnl                          AS cumulative_pnl,
           o.long_value - o.short_value                             AS gross_exposure,
           o.long_value + o.short_value                             AS net_exposure
      FROM outcome AS o
)
