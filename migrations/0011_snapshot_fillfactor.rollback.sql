-- 0011_snapshot_fillfactor rollback: back to the default fillfactor (100).
-- Options only (SHARE UPDATE EXCLUSIVE), idempotent, safe at any time.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

ALTER TABLE portfolio_snapshots RESET (fillfactor);
