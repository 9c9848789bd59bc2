-- 0012_equity_as_of rollback: drop the guard trigger and its function, and
-- portfolios.equity_as_of (its column grants go with it). Loses only a
-- derived value: `pnl status` probes the snapshots again. Catalog-only
-- (ACCESS EXCLUSIVE for milliseconds) and idempotent. Safe for the data at
-- any time, but stop pnl first: a pnl from 0012 on needs the column (a run in
-- flight fails its next chunk; new runs refuse: pending migration).
SET lock_timeout = '5s';
SET statement_timeout = '60s';

DROP TRIGGER IF EXISTS trg_portfolios_equity_as_of_guard ON portfolios;
-- Only the trigger above calls it; removing what the migration added is the point.
-- squawk-ignore ban-drop-function
DROP FUNCTION IF EXISTS pnl_equity_as_of_guard();

-- pnl code from before 0012 does not read the column; code from 0012 on needs it
-- squawk-ignore ban-drop-column
ALTER TABLE portfolios DROP COLUMN IF EXISTS equity_as_of;
