-- chain_lag_histogram: the part of status/chain_lag.sql and
-- status/chain_lag_probe.sql that turns chain ends into the lag histogram.
-- Not a statement of its own: it continues a WITH RECURSIVE clause that has
-- defined chain_end(last_date) (one row per portfolio: the date of its latest
-- complete snapshot, NULL if none), and ends in the final SELECT. The includers
-- differ only in how they find chain_end; their headers say what it returns.
-- A loose index scan of ix_market_prices_price_date walks the dates from the
-- oldest chain end to the latest price date (one probe per date), counted per
-- distinct chain end.
,
latest AS (
    SELECT max(mp.price_date) AS d FROM market_prices AS mp WHERE mp.price_date <= current_date
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
