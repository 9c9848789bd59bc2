-- reset_portfolio_id_sequence: after seed COPYs portfolios with explicit
-- ids 1..N, move the id sequence past them, so the next INSERT gets N + 1.
--
-- $1 the highest id written (bigint)
-- Returns one row: setval (bigint)
SELECT setval(pg_get_serial_sequence('portfolios', 'id'), $1::bigint) AS setval;
