-- claim_owed_dates: the catch-up, for one chunk of portfolios, in one
-- statement: find every price date each portfolio is owed up to $2 and claim
-- those slots.
--
-- Owed: each price date (a date with a close in market_prices) after the
-- portfolio's latest complete snapshot, up to $2. A portfolio with no complete
-- snapshot is owed the price dates from its start date ($5) on. With $6 (a
-- revisit of portfolios this run found held), $5 is a floor for every
-- portfolio: nothing before it is owed.
-- The calendar is walked with a loose index scan of ix_market_prices_price_date
-- (one probe per price date, however many symbols have a close that day),
-- from the chunk's earliest owed date: a one-date run walks one date.
-- Each portfolio's latest complete snapshot (its chain's end) is one backward
-- probe of uq_portfolio_snapshot_date, except when planning ($7 false): then it
-- is portfolios.equity_as_of, where set (the date of the snapshot equity was
-- set from, kept by every writer, and cleared by migration 0013's triggers when
-- that snapshot goes; a probe where NULL). A plan is only a plan:
-- batch/insert_complete.sql writes a slot only where the previous complete
-- snapshot is the one planned (owed_prev), and the claiming statement ($7
-- true) always probes. Its first complete snapshot (where its chain starts,
-- for the report) is a forward probe, skipped where it cannot change the
-- report: a chain that ends on or before $8, the earliest date the run
-- reports, started before every reported date too (start_dates then counts
-- the chain's end instead; NULL $8: probed for every chain), and a portfolio with no
-- complete snapshot has no chain to start (a cold run: 5,000 probes of empty
-- ranges per chunk saved). Each portfolio's existing
-- slots among its owed dates are one range probe (none where nothing is owed).
-- (chunk is MATERIALIZED: inlined, the backward probe ran twice.)
--
-- For the owed slots, in (portfolio, date) order:
--   * nothing is claimed from the first slot another run holds with a live
--     lease on (the portfolio's chain must be written in date order: the
--     caller reports those dates as held and looks again later);
--   * an unfinished claim whose lease expired (its run died) is taken over:
--     UPDATE ... FOR UPDATE SKIP LOCKED, so two runs never take the same one;
--   * a free slot is claimed: INSERT ... ON CONFLICT DO NOTHING RETURNING. A
--     slot another run claimed a moment ago comes back in neither list.
-- With $7 false it only plans: the same owed slots, nothing claimed or taken
-- over (the batch then writes the free ones with batch/insert_complete.sql and
-- hands the rest back to this statement with $7 true).
-- Run it in a transaction after batch/plan_chunk_statements.sql (claim rows
-- are too new for the statistics; every access here has an index path).
--
-- $1 run id (bigint)   $2 last date (date)   $3 portfolio ids (bigint[])
-- $4 lease (interval)  $5 start dates (date[], aligned with $3)
-- $6 start dates are floors for every portfolio (boolean)
-- $7 claim (boolean): false = plan only, write nothing
-- $8 the earliest date the run reports (date; the run's start or the first
--    price date batch/check_run_prices.sql says it may cover), or NULL. It is
--    a lower bound as long as equity_as_of is right (pnl verify checks it) and
--    no undo moves a chain end back while the run goes on; if not, only the
--    report's split between already_done and before_chain can be off.
-- Returns one row:
--   owed_ids bigint[], owed_dates date[]     every owed slot, by portfolio then date
--   got_ids bigint[], got_dates date[]       the slots this run now owns (claimed or taken over)
--   reclaimed bigint                         of which taken over from a dead run
--   start_dates date[], start_counts bigint[]  where the chunk's chains start (first
--                                            complete snapshot, else the start date;
--                                            a date <= $8 for a chain that ends by
--                                            $8), counted
--   busy_ids bigint[]                        portfolios with an owed slot that exists
--                                            (claimed by some run, or complete meanwhile)
--   owed_prev date[]                         aligned with owed_ids: the complete snapshot each
--                                            owed slot follows (the previous owed date, else
--                                            the latest complete one; NULL: a chain's first)
WITH RECURSIVE ends AS MATERIALIZED (
    -- equity_as_of, where set, names a complete snapshot: 0013's triggers clear it when that
    -- snapshot or one before it is deleted, truncated, made incomplete or moved
    SELECT c.portfolio_id, c.start_date,
           COALESCE(CASE WHEN NOT $7::boolean THEN
                         (SELECT pf.equity_as_of FROM portfolios AS pf WHERE pf.id = c.portfolio_id) END,
                    (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                      WHERE s.portfolio_id = c.portfolio_id AND s.is_complete
                      ORDER BY s.snapshot_date DESC LIMIT 1)) AS last_date
      FROM unnest($3::bigint[], $5::date[]) AS c(portfolio_id, start_date)
),
chunk AS MATERIALIZED (
    SELECT e.portfolio_id, e.start_date, e.last_date,
           CASE WHEN e.last_date IS NULL OR e.last_date <= $8::date THEN e.last_date   -- (no chain: no start)
                ELSE (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                       WHERE s.portfolio_id = e.portfolio_id AND s.is_complete
                       ORDER BY s.snapshot_date LIMIT 1) END AS first_date
      FROM ends AS e
),
bounds AS (
    -- owed: price dates d with lower < d <= $2
    SELECT ch.portfolio_id, ch.start_date, ch.first_date, ch.last_date,
           CASE WHEN $6::boolean THEN GREATEST(ch.last_date, ch.start_date - 1)
                ELSE COALESCE(ch.last_date, ch.start_date - 1) END AS lower
      FROM chunk AS ch
),
calendar(d) AS (
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > (SELECT min(b.lower) FROM bounds AS b)
               AND mp.price_date <= $2::date)
    UNION ALL
    SELECT (SELECT min(mp.price_date) FROM market_prices AS mp
             WHERE mp.price_date > k.d AND mp.price_date <= $2::date)
      FROM calendar AS k
     WHERE k.d IS NOT NULL
),
slots AS (
    -- the slots that exist among each portfolio's owed dates: one range probe per portfolio
    SELECT b.portfolio_id, slot.snapshot_date, slot.id, slot.is_complete, slot.lease_expires_at
      FROM bounds AS b
      JOIN LATERAL (
            SELECT s.snapshot_date, s.id, s.is_complete, s.lease_expires_at
              FROM portfolio_snapshots AS s
             WHERE s.portfolio_id = b.portfolio_id
               AND s.snapshot_date > b.lower AND s.snapshot_date <= $2::date
            OFFSET 0) AS slot ON true
     WHERE b.lower < $2::date
),
owed AS (
    SELECT b.portfolio_id, k.d AS snapshot_date, slot.id AS slot_id, slot.is_complete,
           slot.lease_expires_at < now() AS expired, b.last_date
      FROM bounds AS b
      JOIN calendar AS k ON k.d IS NOT NULL AND k.d > b.lower
      LEFT JOIN slots AS slot ON slot.portfolio_id = b.portfolio_id AND slot.snapshot_date = k.d
),
stops AS (
    -- the first owed slot that exists and is not ours to take: claim nothing from there on
    SELECT o.portfolio_id, min(o.snapshot_date) AS stop_date
      FROM owed AS o
     WHERE o.slot_id IS NOT NULL AND (o.is_complete OR o.expired IS NOT TRUE)
     GROUP BY o.portfolio_id
),
wanted AS (
    SELECT o.portfolio_id, o.snapshot_date, o.slot_id, o.expired
      FROM owed AS o
      LEFT JOIN stops AS st ON st.portfolio_id = o.portfolio_id
     WHERE st.stop_date IS NULL OR o.snapshot_date < st.stop_date
),
expired AS (
    SELECT s.id
      FROM portfolio_snapshots AS s
     WHERE s.id = ANY (ARRAY(SELECT w.slot_id FROM wanted AS w WHERE w.slot_id IS NOT NULL))
       AND NOT s.is_complete
       AND s.lease_expires_at < now()
       AND $7::boolean
     ORDER BY s.portfolio_id, s.snapshot_date
       FOR UPDATE SKIP LOCKED
),
taken AS (
    UPDATE portfolio_snapshots AS s
       SET batch_run_id = $1::bigint,
           claimed_at = now(),
           lease_expires_at = now() + $4::interval
      FROM expired AS e
     WHERE s.id = e.id
    RETURNING s.portfolio_id, s.snapshot_date
),
claimed AS (
    INSERT INTO portfolio_snapshots
           (portfolio_id, snapshot_date, is_complete, batch_run_id, claimed_at, lease_expires_at)
    SELECT w.portfolio_id, w.snapshot_date, false, $1::bigint, now(), now() + $4::interval
      FROM wanted AS w
     WHERE w.slot_id IS NULL
       AND $7::boolean
     ORDER BY w.portfolio_id, w.snapshot_date
        ON CONFLICT (portfolio_id, snapshot_date) DO NOTHING
    RETURNING portfolio_id, snapshot_date
),
got AS (
    SELECT t.portfolio_id, t.snapshot_date FROM taken AS t
    UNION ALL
    SELECT c.portfolio_id, c.snapshot_date FROM claimed AS c
),
starts AS (
    SELECT COALESCE(b.first_date, b.start_date) AS start_date, count(*) AS n
      FROM bounds AS b
     GROUP BY 1
)
SELECT ARRAY(SELECT o.portfolio_id FROM owed AS o ORDER BY o.portfolio_id, o.snapshot_date)::bigint[] AS owed_ids,
       ARRAY(SELECT o.snapshot_date FROM owed AS o ORDER BY o.portfolio_id, o.snapshot_date)::date[]  AS owed_dates,
       ARRAY(SELECT g.portfolio_id FROM got AS g ORDER BY g.portfolio_id, g.snapshot_date)::bigint[]  AS got_ids,
       ARRAY(SELECT g.snapshot_date FROM got AS g ORDER BY g.portfolio_id, g.snapshot_date)::date[]   AS got_dates,
       (SELECT count(*) FROM taken)                                                                   AS reclaimed,
       ARRAY(SELECT s.start_date FROM starts AS s ORDER BY 1)::date[]                                 AS start_dates,
       ARRAY(SELECT s.n FROM starts AS s ORDER BY s.start_date)::bigint[]                             AS start_counts,
       ARRAY(SELECT DISTINCT o.portfolio_id FROM owed AS o WHERE o.slot_id IS NOT NULL ORDER BY 1)::bigint[] AS busy_ids,
       ARRAY(SELECT COALESCE(lag(o.snapshot_date) OVER (PARTITION BY o.portfolio_id ORDER BY o.snapshot_date),
                             o.last_date)
               FROM owed AS o ORDER BY o.portfolio_id, o.snapshot_date)::date[]                      AS owed_prev;
