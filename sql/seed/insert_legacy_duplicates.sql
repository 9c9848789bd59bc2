-- insert_legacy_duplicates: reproduce the legacy double-apply for `pnl seed
-- --legacy-duplicates`: the k-th run of the day wrote a snapshot with NAV =
-- equity + k * pnl (created a minute after the previous run's), and left
-- equity_balance at the last one. Only for a database without the constraint.
--
-- $1 portfolio ids (bigint[])  $2 dates (date[])  $3 daily pnl (numeric[])
-- $4 run number k, 1-based (int[])      (all aligned by position)
-- Returns nothing.
WITH runs AS (
    SELECT r.portfolio_id, r.day, r.pnl, r.k
      FROM unnest($1::bigint[], $2::date[], $3::numeric[], $4::int[]) AS r(portfolio_id, day, pnl, k)
),
inserted AS (
    INSERT INTO portfolio_snapshots (portfolio_id, snapshot_date, net_asset_value, daily_pnl, created_at)
    SELECT r.portfolio_id, r.day, p.equity_balance + r.k * r.pnl, r.pnl,
           now() - interval '1 hour' + r.k * interval '1 minute'
      FROM runs AS r
      JOIN portfolios AS p ON p.id = r.portfolio_id
    RETURNING portfolio_id
)
UPDATE portfolios AS p
   SET equity_balance = p.equity_balance + last.k * last.pnl
  FROM (SELECT DISTINCT ON (r.portfolio_id) r.portfolio_id, r.k, r.pnl
          FROM runs AS r ORDER BY r.portfolio_id, r.k DESC) AS last
 WHERE p.id = last.portfolio_id
   AND (SELECT count(*) FROM inserted) > 0;
