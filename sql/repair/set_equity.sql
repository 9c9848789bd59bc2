-- set_equity: set the equity of some portfolios (a repair anchored on a first
-- snapshot starts its replay from that snapshot's opening equity: the batch's
-- finalize opens a chain with equity_balance). Inside the repair's transaction.
-- equity_as_of becomes NULL: this equity is an opening, not a snapshot's NAV
-- (the replay's finalize sets both again).
--
-- $1 portfolio ids (bigint[])   $2 equity (numeric[], aligned with $1)
-- Returns one row per portfolio set: id
UPDATE portfolios AS p
   SET equity_balance = t.equity,
       equity_as_of = NULL
  FROM unnest($1::bigint[], $2::numeric[]) AS t(id, equity)
 WHERE p.id = t.id
RETURNING p.id;
