-- count_unfinished_claims: how many claims (is_complete = false) exist; the
-- rollback of 0003 (which removes is_complete) refuses while any do. Run by
-- yoyo's psycopg connection, only once 0003 is applied (the column exists).
--
-- No parameters.
-- Returns one row: claims (bigint)
SELECT count(*) AS claims
  FROM portfolio_snapshots AS s
 WHERE NOT s.is_complete;
