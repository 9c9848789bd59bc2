-- delete_duplicate_snapshots: for up to $2 duplicate (portfolio_id,
-- snapshot_date) groups, keep one row and delete the others, archiving each
-- deleted row whole (jsonb) in snapshot_dedupe_audit in the same statement, so
-- in the same transaction: nothing is lost, and only rows really deleted are
-- archived (a concurrent dedupe cannot make the audit lie).
--
-- Which row is kept (row_number() = 1 in each group), in this order:
--   1. a complete row (is_complete = true), when that column exists. It is
--      read through to_jsonb(row), so this one statement also runs on a legacy
--      database where the idempotency migration has not added the column yet
--      (a missing column counts as complete: legacy rows were complete);
--   2. a row with a non-null, non-zero NAV;
--   3. the EARLIEST created_at: when the buggy batch re-ran, the first row was
--      computed before any compounding and every later one is more inflated.
--      ("Highest NAV first", the old heuristic, is wrong for portfolios with
--      negative equity, and NULL sorts first under DESC);
--   4. the lowest id (identical created_at: same transaction or clock tie).
--
-- Groups are taken in (portfolio_id, snapshot_date) order, so repeated calls
-- work through any number of groups, one transaction each, and a dedupe that
-- was interrupted resumes where it stopped.
--
-- With $3 (the plan a person confirmed: the ids a dry run would delete) only
-- those rows are deleted, and only while the rule above still ranks them
-- below the kept row: a row that arrived since is never deleted unseen, and
-- the row the rule keeps now is never deleted. NULL: every duplicate.
--
-- $1 rescue run id (bigint)   $2 how many groups at most (int)
-- $3 only these snapshot ids (bigint[]; NULL for every duplicate)
-- Returns one row per deleted snapshot: portfolio_id, snapshot_date,
--   kept_snapshot_id, kept_nav, kept_created_at,
--   deleted_snapshot_id, deleted_nav, deleted_created_at
WITH dup_groups AS (
    SELECT s.portfolio_id, s.snapshot_date
      FROM portfolio_snapshots AS s
     GROUP BY s.portfolio_id, s.snapshot_date
    HAVING count(*) > 1
       AND ($3::bigint[] IS NULL OR bool_or(s.id = ANY($3::bigint[])))
     ORDER BY s.portfolio_id, s.snapshot_date
     LIMIT $2::int
),
ranked AS (
    SELECT s.id,
           row_number() OVER w  AS keep_rank,
           first_value(s.id) OVER w AS kept_id
      FROM portfolio_snapshots AS s
      JOIN dup_groups AS g
        ON g.portfolio_id = s.portfolio_id AND g.snapshot_date = s.snapshot_date
    WINDOW w AS (
        PARTITION BY s.portfolio_id, s.snapshot_date
        ORDER BY COALESCE((to_jsonb(s) ->> 'is_complete')::boolean, true) DESC,
                 (s.net_asset_value IS NOT NULL AND s.net_asset_value <> 0) DESC,
                 s.created_at ASC,
                 s.id ASC
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
deleted AS (
    DELETE FROM portfolio_snapshots AS s
     USING ranked AS r
     WHERE s.id = r.id
       AND r.keep_rank > 1
       AND ($3::bigint[] IS NULL OR s.id = ANY($3::bigint[]))
    RETURNING s.*, r.kept_id
),
archived AS (
    INSERT INTO snapshot_dedupe_audit
           (rescue_run_id, snapshot_id, kept_snapshot_id, portfolio_id, snapshot_date, row_data)
    SELECT $1::bigint, d.id, d.kept_id, d.portfolio_id, d.snapshot_date, to_jsonb(d) - 'kept_id'
      FROM deleted AS d
    RETURNING snapshot_id, kept_snapshot_id, portfolio_id, snapshot_date, row_data
)
SELECT a.portfolio_id, a.snapshot_date,
       a.kept_snapshot_id, k.net_asset_value AS kept_nav, k.created_at AS kept_created_at,
       a.snapshot_id AS deleted_snapshot_id,
       (a.row_data ->> 'net_asset_value')::numeric   AS deleted_nav,
       (a.row_data ->> 'created_at')::timestamptz    AS deleted_created_at
  FROM archived AS a
  JOIN portfolio_snapshots AS k ON k.id = a.kept_snapshot_id
 ORDER BY a.portfolio_id, a.snapshot_date, a.snapshot_id;
