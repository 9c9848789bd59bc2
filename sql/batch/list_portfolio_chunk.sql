-- list_portfolio_chunk: the next chunk of portfolio ids, in id order (keyset
-- pagination: no OFFSET, so each chunk costs the same however far we are),
-- and how many of them have equity_as_of = $5: a run of $5 that reports from
-- $5 (RunResult.report_from: not a backfill reaching back, no selected
-- portfolio owed an earlier date) skips planning a chunk whose chains all end
-- on $5 exactly (nothing is owed; a re-run), since equity_as_of names a
-- complete snapshot wherever it is set (migration 0013).
--
-- $1 last id of the previous chunk (bigint; 0 to start)
-- $2 only these ids (bigint[]; NULL for every portfolio)
-- $3 chunk size (int)
-- $4 stop before this id (bigint; NULL: go to the last id). A run walks from
--    its starting id to the end, then from the first id up to that start.
-- $5 the run's date (date; NULL: ends_on is 0)
-- Returns one row: ids (bigint[], at most $3, ascending; empty at the end),
-- one array rather than a row per id: decoding 5,000 rows cost the client
-- about twice as much as one array; ends_on (bigint): how many of them have
-- equity_as_of = $5
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
       (SELECT count(*) FROM chunk AS c WHERE c.equity_as_of = $5::date) AS ends_on;
