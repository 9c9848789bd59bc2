-- 0007_dates_and_undo rollback: drops the undo archive, the new batch_runs
-- columns and the running-runs index, and puts back the old CHECKs.
-- Refuses, changing nothing, while snapshot_undo_audit holds rows that were
-- not restored (dropping it would lose those snapshots): restore them with
-- `pnl batch undo --restore RUN_ID`, or dump the table first and delete them.
-- Runs whose status only this version knows are mapped to the nearest old
-- one ('held' -> 'partial', 'abandoned' -> 'failed'); finished undo runs in
-- rescue_runs are deleted with their archive.
-- Not in a transaction (like the migration), and every statement is safe to
-- run again or on a half-migrated database.
SET lock_timeout = '5s';
SET statement_timeout = '60s';

DO $refuse$
BEGIN
    IF to_regclass('snapshot_undo_audit') IS NOT NULL
       AND EXISTS (SELECT 1 FROM snapshot_undo_audit WHERE restored_at IS NULL) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_in_use',
            MESSAGE = 'snapshot_undo_audit holds snapshots removed by `pnl batch undo` that were not restored',
            DETAIL = 'Rolling back 0007 would drop them. Nothing was changed.',
            HINT = 'Restore them with `pnl batch undo --restore RUN_ID`, or pg_dump -t snapshot_undo_audit and delete its rows, then roll back again.';
    END IF;
END
$refuse$;

DROP INDEX CONCURRENTLY IF EXISTS ix_batch_runs_running;

-- The table this migration created (empty of unrestored rows: checked above).
-- squawk-ignore ban-drop-table
DROP TABLE IF EXISTS snapshot_undo_audit;
DELETE FROM rescue_runs WHERE kind = 'undo';

UPDATE batch_runs SET status = 'partial' WHERE status = 'held';
UPDATE batch_runs SET status = 'failed' WHERE status = 'abandoned';
-- squawk-ignore ban-drop-constraint
ALTER TABLE batch_runs DROP CONSTRAINT IF EXISTS ck_batch_runs_status;
ALTER TABLE batch_runs ADD CONSTRAINT ck_batch_runs_status
    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')) NOT VALID;
ALTER TABLE batch_runs VALIDATE CONSTRAINT ck_batch_runs_status;
-- squawk-ignore ban-drop-constraint
ALTER TABLE rescue_runs DROP CONSTRAINT IF EXISTS ck_rescue_runs_kind;
ALTER TABLE rescue_runs ADD CONSTRAINT ck_rescue_runs_kind CHECK (kind IN ('dedupe', 'repair')) NOT VALID;
ALTER TABLE rescue_runs VALIDATE CONSTRAINT ck_rescue_runs_kind;

-- Removing the columns this migration added is the point of the rollback.
-- squawk-ignore ban-drop-column
ALTER TABLE batch_runs DROP COLUMN IF EXISTS before_chain;
-- squawk-ignore ban-drop-column
ALTER TABLE batch_runs DROP COLUMN IF EXISTS held;
-- squawk-ignore ban-drop-column
ALTER TABLE batch_runs DROP COLUMN IF EXISTS lease;
-- squawk-ignore ban-drop-column
ALTER TABLE batch_runs DROP COLUMN IF EXISTS from_date;
