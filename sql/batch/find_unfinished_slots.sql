-- find_unfinished_slots: which of these (portfolio, date) slots have no
-- complete snapshot (yet). A run asks it at the end about the slots it lost to
-- another run: the ones still unfinished are that run's to finish (held).
--
-- $1 portfolio ids (bigint[])   $2 dates (date[], aligned with $1)
-- Returns: portfolio_id, snapshot_date, one row per unfinished slot
SELECT t.portfolio_id, t.snapshot_date
  FROM unnest($1::bigint[], $2::date[]) AS t(portfolio_id, snapshot_date)
 WHERE NOT EXISTS (
        SELECT 1 FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = t.portfolio_id
           AND s.snapshot_date = t.snapshot_date
           AND s.is_complete)
 ORDER BY t.portfolio_id, t.snapshot_date;
