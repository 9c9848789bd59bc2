-- chain_lag: how far each portfolio's chain is behind the latest price date
-- (not after today, the database's clock), counted in price dates, as a
-- histogram: how many portfolios are N price dates behind.
-- Cheap on a big book, at any depth of history: a chain's end is
-- portfolios.equity_as_of (set with equity, in the same statement as the
-- snapshot; `pnl verify` checks it); only where that is NULL (never run, or
-- not run since migration 0012) one backward probe of
-- uq_portfolio_snapshot_date finds it. Then a loose index scan of
-- ix_market_prices_price_date over the dates from the oldest chain end to the
-- latest price date (one probe per date), counted per distinct chain end.
--
-- No parameters.
-- Returns one row: latest_price_date (date; NULL: no prices yet), portfolios,
--   up_to_date, never_run (no complete snapshot), behind (bigint),
--   lag_dates int[], lag_counts bigint[] (aligned: N price dates behind -> portfolios)
WITH RECURSIVE latest AS (
    SELECT max(mp.price_date) AS d FROM market_prices AS mp WHERE mp.price_date <= current_date
),
chain_end AS (
    SELECT CASE WHEN p.equity_as_of IS NOT NULL THEN p.equity_as_of
                ELSE (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                       WHERE s.portfolio_id = p.id AND s.is_complete
                       ORDER BY s.snapshot_date DESC LIMIT 1) END AS last_date
      FROM portfolios AS p
),
ends AS (
    SELECT c.last_date, count(*) AS n FROM chain_end AS c GROUP BY c.last_date
),
calendar(d) AS (
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > (SELECT min(e.last_date) FROM ends AS e)
               AND mp.price_date <= (SELECT l.d FROM latest AS l))
    UNION ALL
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > k.d AND mp.price_date <= (SELECT l.d FROM latest AS l))
      FROM calendar AS k
     WHERE k.d IS NOT NULL
),
lagging AS (
    SELECT (SELECT count(*) FROM calendar AS k WHERE k.d IS NOT NULL AND k.d > e.last_date)::int AS lag, e.n
      FROM ends AS e
     WHERE e.last_date IS NOT NULL
),
histogram AS (
    SELECT g.lag, sum(g.n)::bigint AS n FROM lagging AS g WHERE g.lag > 0 GROUP BY g.lag
)
SELECT (SELECT l.d FROM latest AS l)                                          AS latest_price_date,
       (SELECT COALESCE(sum(e.n), 0) FROM ends AS e)::bigint                  AS portfolios,
       (SELECT COALESCE(sum(g.n), 0) FROM lagging AS g WHERE g.lag = 0)::bigint AS up_to_date,
       (SELECT COALESCE(sum(e.n), 0) FROM ends AS e WHERE e.last_date IS NULL)::bigint AS never_run,
       (SELECT COALESCE(sum(h.n), 0) FROM histogram AS h)::bigint              AS behind,
       ARRAY(SELECT h.lag FROM histogram AS h ORDER BY h.lag)::int[]           AS lag_dates,
       ARRAY(SELECT h.n FROM histogram AS h ORDER BY h.lag)::bigint[]          AS lag_counts;
