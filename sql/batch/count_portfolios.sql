-- count_portfolios: how many portfolios a run will visit (for progress).
--
-- $1 only these ids (bigint[]; NULL for every portfolio)
-- Returns one row: total (bigint)
SELECT count(*) AS total
  FROM portfolios AS p
 WHERE $1::bigint[] IS NULL OR p.id = ANY($1::bigint[]);
