-- portfolio_id_at: the id at a given position of the run's portfolios in id
-- order, where a run starts walking them (pnl/batch.py, starting_chunk): the
-- first id of one of the chunks a walk from the lowest id would make, so the
-- chunks are the same, only their order turns. Once per run; an index scan of
-- pk_portfolios up to that position.
--
-- $1 only these ids (bigint[]; NULL for every portfolio)   $2 position (bigint, 0 = the lowest id)
-- Returns one row: id (bigint; NULL past the end)
SELECT (SELECT p.id
          FROM portfolios AS p
         WHERE $1::bigint[] IS NULL OR p.id = ANY($1::bigint[])
         ORDER BY p.id
        OFFSET $2::bigint
         LIMIT 1) AS id;
