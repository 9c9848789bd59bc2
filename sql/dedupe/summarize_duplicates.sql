-- summarize_duplicates: how many (portfolio_id, snapshot_date) groups have
-- more than one snapshot row, and how many extra rows that is.
-- Works before and after the idempotency migration.
--
-- No parameters.
-- Returns one row: groups (bigint), extra_rows (bigint), portfolios (bigint)
SELECT count(*)                          AS groups,
       COALESCE(sum(d.n - 1), 0)::bigint AS extra_rows,
       count(DISTINCT d.portfolio_id)    AS portfolios
  FROM (SELECT s.portfolio_id, count(*) AS n
          FROM portfolio_snapshots AS s
         GROUP BY s.portfolio_id, s.snapshot_date
        HAVING count(*) > 1) AS d;
