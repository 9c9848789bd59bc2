-- claim_slots: claim today's slot for each portfolio of a chunk, atomically.
--
-- INSERT ... ON CONFLICT (portfolio_id, snapshot_date) DO NOTHING RETURNING:
-- a row comes back only for a slot this run now owns (is_complete = false,
-- stamped with this run's id and a lease). A portfolio whose slot exists
-- already (done, or claimed by another run) returns nothing: touch nothing.
-- Rows are inserted in portfolio-id order so that concurrent runs wait on each
-- other in the same order and cannot deadlock.
--
-- A portfolio that already has a complete snapshot AFTER the date is not
-- claimed: processing an earlier date now would fork its equity chain. It is
-- returned in blocked_ids with that later date (unless the date is done).
--
-- $1 run id (bigint)   $2 snapshot date (date)   $3 portfolio ids (bigint[])
-- $4 lease (interval)
-- Returns one row: claimed_ids bigint[], blocked_ids bigint[], blocked_dates date[]
WITH candidates AS (
    SELECT c.id AS portfolio_id
      FROM unnest($3::bigint[]) AS c(id)
),
later AS (
    SELECT c.portfolio_id, min(s.snapshot_date) AS later_date
      FROM candidates AS c
      JOIN portfolio_snapshots AS s
        ON s.portfolio_id = c.portfolio_id
       AND s.snapshot_date > $2::date
       AND s.is_complete
     WHERE NOT EXISTS (
            SELECT 1 FROM portfolio_snapshots AS today
             WHERE today.portfolio_id = c.portfolio_id
               AND today.snapshot_date = $2::date)
     GROUP BY c.portfolio_id
),
claimed AS (
    INSERT INTO portfolio_snapshots
           (portfolio_id, snapshot_date, is_complete, batch_run_id, claimed_at, lease_expires_at)
    SELECT c.portfolio_id, $2::date, false, $1::bigint, now(), now() + $4::interval
      FROM candidates AS c
     WHERE NOT EXISTS (SELECT 1 FROM later AS l WHERE l.portfolio_id = c.portfolio_id)
     ORDER BY c.portfolio_id
        ON CONFLICT (portfolio_id, snapshot_date) DO NOTHING
    RETURNING portfolio_id
)
SELECT ARRAY(SELECT portfolio_id FROM claimed ORDER BY portfolio_id)::bigint[] AS claimed_ids,
       ARRAY(SELECT portfolio_id FROM later ORDER BY portfolio_id)::bigint[]   AS blocked_ids,
       ARRAY(SELECT later_date FROM later ORDER BY portfolio_id)::date[]       AS blocked_dates;
