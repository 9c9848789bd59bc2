-- list_live_claims: the runs that may be writing dates on or after a date
-- right now: `pnl batch undo` refuses while any exists (it would remove dates
-- under a run that is computing them).
--   * unfinished claims with a live lease on or after the date, on the
--     portfolios undo would change (ix_portfolio_snapshots_incomplete);
--   * batch runs still running up to a date on or after it whose heartbeat is
--     younger than their lease (ix_batch_runs_running): a run writes free
--     slots in one statement and holds no claim while it does, and which
--     portfolios it selected is not recorded, so it counts for all.
--
-- $1 from date (date)   $2 only these portfolios (bigint[]; NULL for all)
-- Returns one row per run: batch_run_id, claims (bigint; 0 for a running run
--   without claims), lease_expires_at (the latest claim's, or heartbeat + lease),
--   host, pid (the run's process, from batch_runs; NULL for a claim without a run)
SELECT x.batch_run_id, sum(x.claims)::bigint AS claims, max(x.lease_expires_at) AS lease_expires_at,
       br.host, br.pid
  FROM (SELECT s.batch_run_id, count(*) AS claims, max(s.lease_expires_at) AS lease_expires_at
          FROM portfolio_snapshots AS s
         WHERE NOT s.is_complete
           AND s.snapshot_date >= $1::date
           AND s.lease_expires_at >= now()
           AND ($2::bigint[] IS NULL OR s.portfolio_id = ANY($2::bigint[]))
         GROUP BY s.batch_run_id
        UNION ALL
        SELECT r.id, 0, r.heartbeat_at + COALESCE(r.lease, interval '15 minutes')
          FROM batch_runs AS r
         WHERE r.status = 'running'
           AND r.run_date >= $1::date
           AND r.heartbeat_at + COALESCE(r.lease, interval '15 minutes') >= now()) AS x
 LEFT JOIN batch_runs AS br ON br.id = x.batch_run_id
 GROUP BY x.batch_run_id, br.host, br.pid
 ORDER BY x.batch_run_id;
