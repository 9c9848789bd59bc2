-- find_chain_holes: of the dates a run was asked for, the ones a selected portfolio
-- has no snapshot on (no row at all: a claim is someone's work, not a hole)
-- although its chain goes on after them (a complete snapshot before and one
-- after). Runs only extend chains, so a run would count such a date "already
-- done" (it is before the chain's end) while nothing is there; the caller
-- reports it failed instead, with the way out (undo from it, run again).
-- See sql/verify/chain_skips_price_date.sql for how holes happen.
--
-- The caller passes only the dates it was asked for (a backfill's price dates,
-- `--date D`) that it counts already done for someone; catch-up dates are
-- not among them. A hole needs a complete snapshot after the date, so dates
-- all on or after the latest price date (the daily run) find none without
-- reading a snapshot: the whole statement is gated on that (one probe).
-- Otherwise, per selected portfolio whose chain may end after the first date
-- (equity_as_of, when known): the first and the last complete snapshot (one
-- probe each) and its slots within the dates' span (one range scan).
--
-- Run it after batch/plan_chunk_statements.sql (its probes, planned on a
-- snapshot table the statistics think empty, are sequential scans otherwise).
--
-- $1 portfolio ids (bigint[]; NULL = every portfolio)   $2 dates the run was asked for (date[])
-- Returns one row per portfolio with a hole: portfolio_id, dates (date[],
-- ascending: the reported dates it has no snapshot on)
WITH days AS MATERIALIZED (
    SELECT DISTINCT u.d FROM unnest($2::date[]) AS u(d) WHERE u.d IS NOT NULL
),
span AS MATERIALIZED (
    SELECT min(k.d) AS lo, max(k.d) AS hi
      FROM days AS k
    HAVING min(k.d) < (SELECT max(mp.price_date) FROM market_prices AS mp)
)
SELECT p.id AS portfolio_id, h.dates
  FROM span AS sp
  JOIN portfolios AS p
    ON ($1::bigint[] IS NULL OR p.id = ANY($1::bigint[]))
   AND (p.equity_as_of IS NULL OR p.equity_as_of > sp.lo)
 CROSS JOIN LATERAL (
        SELECT s.snapshot_date AS first_date
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id AND s.is_complete
         ORDER BY s.snapshot_date
         LIMIT 1) AS f
 CROSS JOIN LATERAL (
        SELECT s.snapshot_date AS last_date
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id AND s.is_complete
         ORDER BY s.snapshot_date DESC
         LIMIT 1) AS l
 CROSS JOIN LATERAL (
        SELECT array_agg(s.snapshot_date) AS have
          FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id
           AND s.snapshot_date BETWEEN sp.lo AND sp.hi) AS slots
 CROSS JOIN LATERAL (
        SELECT array_agg(k.d ORDER BY k.d) AS dates
          FROM days AS k
         WHERE k.d > f.first_date
           AND k.d < l.last_date
           AND k.d <> ALL (COALESCE(slots.have, '{}'::date[]))) AS h
 WHERE l.last_date > sp.lo
   AND h.dates IS NOT NULL
 ORDER BY p.id;
