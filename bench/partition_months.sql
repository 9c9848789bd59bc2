-- partition_months: the DDL of one partition of portfolio_snapshots per
-- calendar month from $1's month to $2's month (bench/partition_snapshots.sql),
-- each with fillfactor 90. Built by format() from dates, never run here.
-- $1 first date (date)  $2 last date (date)
-- Returns one row per month: ddl (text) to execute.
SELECT format('CREATE TABLE %I PARTITION OF portfolio_snapshots FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 90)',
              'portfolio_snapshots_' || to_char(m, 'YYYY_MM'), m::date, (m + interval '1 month')::date) AS ddl
  FROM generate_series(date_trunc('month', $1::date), date_trunc('month', $2::date), interval '1 month') AS m;
