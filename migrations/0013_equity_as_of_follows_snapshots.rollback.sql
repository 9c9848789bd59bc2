-- 0013_equity_as_of_follows_snapshots rollback: drop the three triggers and
-- their functions. Loses nothing stored. Stop pnl first: a pnl from 0013 on
-- trusts equity_as_of without a probe and needs the triggers (new runs refuse:
-- pending migration); a pnl before 0013 probes. Catalog-only and idempotent:
-- DROP TRIGGER takes ACCESS EXCLUSIVE on portfolio_snapshots for milliseconds
-- (lock_timeout: it waits at most 5 s, behind a running batch's statements).
SET lock_timeout = '5s';
SET statement_timeout = '60s';

DROP TRIGGER IF EXISTS trg_snapshots_delete_forgets_equity_as_of ON portfolio_snapshots;
DROP TRIGGER IF EXISTS trg_snapshots_update_forgets_equity_as_of ON portfolio_snapshots;
DROP TRIGGER IF EXISTS trg_snapshots_truncate_forgets_equity_as_of ON portfolio_snapshots;
-- Only the triggers above call them; removing what the migration added is the point.
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS pnl_equity_as_of_forget_removed();
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS pnl_equity_as_of_forget_changed();
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS pnl_equity_as_of_forget_all();
