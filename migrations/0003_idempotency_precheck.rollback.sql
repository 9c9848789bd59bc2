-- 0003_idempotency_precheck rollback: removes is_complete.
-- Refuses, changing nothing, while unfinished claims (is_complete = false)
-- exist: without the column a claim would read as a complete snapshot with a
-- NULL NAV, and `pnl migrate` would bring it back as complete (DEFAULT true),
-- so the next run would skip that portfolio's date for good. Stop the batch
-- and clear them with `pnl cleanup` first (or let their runs finish).
SET lock_timeout = '5s';
SET statement_timeout = '60s';

DO $refuse$
DECLARE
    n_claims bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'portfolio_snapshots'
                  AND column_name = 'is_complete') THEN
        EXECUTE 'SELECT count(*) FROM portfolio_snapshots WHERE NOT is_complete' INTO n_claims;
        IF n_claims > 0 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'object_in_use',
                MESSAGE = n_claims || ' unfinished claim(s) (is_complete = false) exist',
                DETAIL = 'Without is_complete they would turn into complete snapshots with a NULL NAV. Nothing was changed.',
                HINT = 'Stop the batch, then `pnl cleanup --older-than 1s --yes` (or wait for the runs to finish), and roll back again.';
        END IF;
    END IF;
END
$refuse$;

-- Removing the column this migration added is the point of the rollback.
-- squawk-ignore ban-drop-column
ALTER TABLE portfolio_snapshots DROP COLUMN IF EXISTS is_complete;
