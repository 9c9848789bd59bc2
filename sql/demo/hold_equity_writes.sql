-- hold_equity_writes: the demo's starting gate. In a transaction the demo
-- keeps open for a moment, take a SHARE lock on portfolios: reads, claims
-- (snapshot inserts) and row locks go on, but every finalize statement (it
-- updates portfolios.equity_balance) waits at its start, before it writes a
-- row. Two batch runs started together then both hold claims at the same
-- moment, as they would on a large book, with nothing in pnl's code paused.
-- The demo releases the lock (rolls back) well within pnl's lock_timeout.
--
-- No parameters. Returns nothing.
LOCK TABLE portfolios IN SHARE MODE;
