-- 0003_idempotency_precheck rollback: removes is_complete.
-- Incomplete claims (is_complete = false) would then look complete to a
-- legacy reader: run `pnl cleanup` (or wait for no run to be active) first.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- Removing the column this migration added is the point of the rollback.
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS is_complete;
