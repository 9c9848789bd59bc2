-- archive_and_reopen_snapshots: the first step of a repair. For each portfolio,
-- every complete snapshot on or after its repair-from date is archived as it
-- is now (to_jsonb, in snapshot_repair_audit) and reopened as a claim of the
-- repair's run ($2: is_complete = false), all in one statement. The repair
-- then finalizes those claims date by date with batch/finalize_claimed.sql,
-- the batch's own P&L rules, so a replay is exactly what the batch would have
-- computed from the anchor. The caller holds one transaction around all of
-- it: a repair is applied whole or not at all.
--
-- $1 rescue run id (bigint)   $2 batch run id used as the claim token (bigint)
-- $3 portfolio ids (bigint[]) $4 repair-from dates (date[], aligned with $3)
-- Returns one row per reopened snapshot: portfolio_id, snapshot_date, old_nav
WITH targets AS (
    SELECT s.*
      FROM portfolio_snapshots AS s
      JOIN unnest($3::bigint[], $4::date[]) AS t(portfolio_id, from_date)
        ON s.portfolio_id = t.portfolio_id
       AND s.snapshot_date >= t.from_date
     WHERE s.is_complete
       FOR UPDATE OF s
),
archived AS (
    INSERT INTO snapshot_repair_audit (rescue_run_id, snapshot_id, portfolio_id, snapshot_date, old_row)
    SELECT $1::bigint, t.id, t.portfolio_id, t.snapshot_date, to_jsonb(t)
      FROM targets AS t
    RETURNING snapshot_id
)
UPDATE portfolio_snapshots AS s
   SET is_complete = false,
       batch_run_id = $2::bigint,
       claimed_at = now(),
       lease_expires_at = now() + interval '1 hour',
       completed_at = NULL
  FROM targets AS t
 WHERE s.id = t.id
   AND s.id IN (SELECT a.snapshot_id FROM archived AS a)
RETURNING s.portfolio_id, s.snapshot_date, t.net_asset_value AS old_nav;
