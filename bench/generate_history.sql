-- generate_history: a book with history, in ONE statement: for each given
-- price date (ascending) one succeeded batch_runs row and one COMPLETE
-- snapshot per portfolio, then every portfolio's equity set to its last NAV
-- (and equity_as_of to its date, as pnl's writers set it).
-- The chains verify (`pnl verify` is healthy): each portfolio starts from its
-- bench_start equity E, moves by a = E/100 times a per-date factor c_j in
-- [-1, 1] (two decimals, so every sum is exact), opening_equity = the
-- previous NAV, NAV = opening + daily_pnl, no capital flows, cumulative_pnl
-- = NAV - E; exposures 1.3x / -0.3x NAV. The per-date running sum is taken
-- over the dates only (a few hundred rows), never over the snapshots: a
-- million portfolios x 250 dates is one streaming INSERT ... SELECT.
-- $1 the history dates, ascending (date[])  $2 positions per portfolio (int)
-- $3 portfolios (bigint, recorded as each run's processed count)
-- Returns one row: runs (bigint), snapshots (bigint), portfolios (bigint)
WITH d AS (
    SELECT x.day, x.c, sum(x.c) OVER (ORDER BY x.j) AS cum
      FROM (SELECT u.day, u.j, ((u.j * 7919 + 17) % 201 - 100) / 100.0 AS c
              FROM unnest($1::date[]) WITH ORDINALITY AS u(day, j)) AS x
),
runs AS (
    INSERT INTO batch_runs (run_date, status, started_at, heartbeat_at, finished_at, processed, host, pid)
    SELECT d.day, 'succeeded', d.day + time '18:00', d.day + time '18:05', d.day + time '18:05', $3::bigint,
           'bench-history', 0
      FROM d
    RETURNING id, run_date
),
snaps AS (
    INSERT INTO portfolio_snapshots
           (portfolio_id, snapshot_date, is_complete, opening_equity, daily_pnl, capital_flow, net_asset_value,
            daily_return, cumulative_pnl, long_value, short_value, gross_exposure, net_exposure, num_positions,
            batch_run_id, claimed_at, completed_at, created_at)
    SELECT v.portfolio_id, v.day, true, v.opening, v.pnl, 0, v.nav,
           CASE WHEN v.opening = 0 THEN NULL ELSE round(v.pnl / v.opening, 10) END,
           v.nav - v.start, round(v.nav * 1.3, 4), round(v.nav * -0.3, 4),
           round(v.nav * 1.3, 4) - round(v.nav * -0.3, 4), round(v.nav * 1.3, 4) + round(v.nav * -0.3, 4),
           $2::int, v.run_id, v.stamp, v.stamp, v.stamp
      FROM (SELECT s.id AS portfolio_id, d.day, r.id AS run_id, d.day + time '18:01' AS stamp,
                   s.equity_balance AS start,
                   s.equity_balance + s.equity_balance / 100 * (d.cum - d.c) AS opening,
                   s.equity_balance / 100 * d.c AS pnl,
                   s.equity_balance + s.equity_balance / 100 * d.cum AS nav
              FROM d JOIN runs AS r ON r.run_date = d.day
             CROSS JOIN bench_start AS s) AS v
    RETURNING 1
),
eq AS (
    UPDATE portfolios AS p
       SET equity_balance = s.equity_balance + s.equity_balance / 100 * (SELECT d.cum FROM d ORDER BY d.day DESC LIMIT 1),
           equity_as_of = (SELECT max(d.day) FROM d)
      FROM bench_start AS s
     WHERE s.id = p.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM snaps) AS snapshots,
       (SELECT count(*) FROM eq) AS portfolios;
