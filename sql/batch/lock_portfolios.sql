-- lock_portfolios: lock the chunk's portfolio rows, in id order, at the start
-- of the finalize transaction. Two runs finalizing different dates of the same
-- portfolio then take turns, and the second one's finalize statement (a new
-- snapshot under READ COMMITTED) sees the first one's result: a portfolio's
-- equity chain is always written in date order. Id order means no deadlocks.
-- FOR NO KEY UPDATE: the finalize updates equity_balance anyway, and this
-- mode does not block inserts of rows that reference the portfolio.
--
-- $1 portfolio ids (bigint[])
-- Returns: id (bigint), one row per locked portfolio
SELECT p.id
  FROM portfolios AS p
 WHERE p.id = ANY($1::bigint[])
 ORDER BY p.id
   FOR NO KEY UPDATE;
