-- get_equity: the equity balance of some portfolios.
--
-- $1 portfolio ids (bigint[])
-- Returns: id, equity_balance
SELECT p.id, p.equity_balance
  FROM portfolios AS p
 WHERE p.id = ANY($1::bigint[])
 ORDER BY p.id;
