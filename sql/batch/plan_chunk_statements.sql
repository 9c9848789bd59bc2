-- plan_chunk_statements: planner settings for the rest of this transaction
-- (SET LOCAL), run before the statements that finalize one chunk.
--
-- Every chunk statement touches a few thousand rows by key, and the rows it
-- touches in portfolio_snapshots are claims made seconds ago, which the table
-- statistics never know. Estimates built on them are off by orders of
-- magnitude, and two plan shapes they lead to were measured to be ruinous:
--   enable_seqscan = off    a sequential scan of the whole snapshot table per
--                           chunk looks cheap when one row is expected; at 1M
--                           portfolios one chunk took 35 s instead of 0.2 s,
--                           and a run grew quadratically with the table. Every
--                           access these statements make has an index path.
--   enable_mergejoin = off  sorts of every position row of the chunk for a
--                           merge join where a hash join is right: 76 -> 55 ms
--                           per 1,000 portfolios at 1M.
-- SET LOCAL ends with the transaction; nothing else in the session changes.
--
-- No parameters. Returns nothing.
SET LOCAL enable_seqscan = off;
SET LOCAL enable_mergejoin = off;
