-- 0002_operations rollback: removes the claim columns and batch_runs.
-- The run history and each snapshot's opening equity, flow and claim data are
-- lost; the legacy columns (NAV, P&L, exposures) are untouched.
-- Every statement is idempotent (IF EXISTS).
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- Removing the columns this migration added is the point of the rollback.
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS completed_at;
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS lease_expires_at;
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS claimed_at;
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS batch_run_id;
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS capital_flow;
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS opening_equity;
-- The table this migration created.
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS batch_runs;
