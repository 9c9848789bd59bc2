-- 0008_valuation_marks rollback: drops the marks, their repair archive, the
-- stale_symbols column and ix_positions_symbol, and puts back 0007's status
-- CHECK ('stale' runs become 'partial').
-- What it loses: the record of which close each date was valued with (the
-- previous version values every date from a fresh read of market_prices) and
-- the archive of re-fixed marks: `pg_dump -t valuation_marks -t
-- valuation_mark_repair_audit` first if you may need them.
-- Not in a transaction (like the migration), and every statement is safe to
-- run again or on a half-migrated database.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

DROP INDEX CONCURRENTLY IF EXISTS ix_positions_symbol;

-- The tables this migration created: dropping them is the point of the rollback.
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS valuation_mark_repair_audit;
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS valuation_marks;

UPDATE batch_runs SET status = 'partial' WHERE status = 'stale';
-- squawk-ignore ban-drop-constraint
ALTER TABLE batch_runs DROP CONSTRAINT IF EXISTS ck_batch_runs_status;
ALTER TABLE batch_runs ADD CONSTRAINT ck_batch_runs_status
    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted', 'held', 'abandoned')) NOT VALID;
ALTER TABLE batch_runs VALIDATE CONSTRAINT ck_batch_runs_status;

-- Removing the column this migration added is the point of the rollback.
-- squawk-ignore ban-drop-column
ALTER TABLE batch_runs DROP COLUMN IF EXISTS stale_symbols;
