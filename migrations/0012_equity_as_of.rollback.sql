-- 0012_equity_as_of rollback: drop portfolios.equity_as_of (and its column
-- grants with it). Loses only a derived value: `pnl status` probes the
-- snapshots again. Catalog-only (ACCESS EXCLUSIVE for milliseconds), safe at
-- any time, idempotent.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

-- pnl code from before 0012 does not read the column; code from 0012 on needs it
-- squawk-ignore ban-drop-column
ALTER TABLE portfolios DROP COLUMN IF EXISTS equity_as_of;
