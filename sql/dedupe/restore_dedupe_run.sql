-- restore_dedupe_run: put back every snapshot row a dedupe run deleted, exactly
-- as archived (same id, same values), and mark the audit rows restored.
-- Only possible while uq_portfolio_snapshot_date does not exist: with it, the
-- INSERT fails on the first duplicate and, being one statement, restores
-- nothing. Rows archived before the idempotency migration have no
-- is_complete key: they come back as complete, as legacy rows are.
--
-- $1 rescue run id (bigint)
-- Returns one row: restored (bigint)
WITH todo AS (
    SELECT a.id, a.row_data
      FROM snapshot_dedupe_audit AS a
     WHERE a.rescue_run_id = $1::bigint
       AND a.restored_at IS NULL
     ORDER BY a.id
       FOR UPDATE
),
reinserted AS (
    INSERT INTO portfolio_snapshots
    SELECT r.*
      FROM todo AS t
     CROSS JOIN LATERAL jsonb_populate_record(
            NULL::portfolio_snapshots, '{"is_complete": true}'::jsonb || t.row_data) AS r
    RETURNING id
),
marked AS (
    UPDATE snapshot_dedupe_audit AS a
       SET restored_at = now()
      FROM todo AS t
     WHERE a.id = t.id
    RETURNING a.id
)
SELECT (SELECT count(*) FROM reinserted) AS restored;
