-- list_portfolio_chunk: the next chunk of portfolio ids, in id order (keyset
-- pagination: no OFFSET, so each chunk costs the same however far we are),
-- and where their chains end, as far as a run of $5 can plan from it alone:
-- how many have equity_as_of = $5, how many = the price date before $5, and
-- which have never been run (equity_as_of NULL and no snapshot row at all:
-- one probe of uq_portfolio_snapshot_date each, only where equity_as_of is
-- NULL). equity_as_of names a complete snapshot wherever it is set (migration
-- 0013), so for a chunk whose portfolios all end on $5 (a re-run: nothing
-- owed), or each on the price date before $5 or on nothing (the daily run, a
-- first run: each owes $5 alone) the run knows what batch/claim_owed_dates.sql
-- would plan without asking it ($5 a price date, as a run's date is;
-- ChunkListing.plan in pnl/batch.py says when); batch/insert_complete.sql
-- still checks each slot's previous snapshot and refuses a gap.
-- With $5 set, run it after batch/plan_chunk_statements.sql (the probes on an
-- empty, analyzed snapshot table must not become sequential scans).
--
-- $1 last id of the previous chunk (bigint; 0 to start)
-- $2 only these ids (bigint[]; NULL for every portfolio)
-- $3 chunk size (int)
-- $4 stop before this id (bigint; NULL: go to the last id). A run walks from
--    its starting id to the end, then from the first id up to that start.
-- $5 the run's date (date; NULL: only ids, the rest 0, NULL or empty)
-- Returns one row:
--   ids bigint[]          at most $3, ascending; empty at the end (one array rather
--                         than a row per id: decoding 5,000 rows cost the client
--                         about twice as much as one array)
--   ends_on bigint        how many have equity_as_of = $5
--   before_date date      the latest price date before $5 (a date with a close in
--                         market_prices; NULL: none)
--   ends_before bigint    how many have equity_as_of = before_date
--   fresh_ids bigint[]    the ones never run, ascending
WITH chunk AS MATERIALIZED (
    SELECT p.id, p.equity_as_of
      FROM portfolios AS p
     WHERE p.id > $1::bigint
       AND ($4::bigint IS NULL OR p.id < $4::bigint)
       AND ($2::bigint[] IS NULL OR p.id = ANY($2::bigint[]))
     ORDER BY p.id
     LIMIT $3::int
)
SELECT ARRAY(SELECT c.id FROM chunk AS c ORDER BY c.id)::bigint[] AS ids,
       (SELECT count(*) FROM chunk AS c WHERE c.equity_as_of = $5::date) AS ends_on,
       prev.before_date,
       (SELECT count(*) FROM chunk AS c WHERE c.equity_as_of = prev.before_date) AS ends_before,
       ARRAY(SELECT c.id FROM chunk AS c
              WHERE $5::date IS NOT NULL
                AND c.equity_as_of IS NULL
                AND (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                      WHERE s.portfolio_id = c.id LIMIT 1) IS NULL
              ORDER BY c.id)::bigint[] AS fresh_ids
  FROM (SELECT max(mp.price_date) AS before_date FROM market_prices AS mp WHERE mp.price_date < $5::date) AS prev;
