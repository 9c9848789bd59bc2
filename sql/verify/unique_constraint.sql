-- unique_constraint: is uq_portfolio_snapshot_date there, validated, and backed
-- by a valid unique index on (portfolio_id, snapshot_date)?
-- A row means: the database does not guarantee one snapshot per portfolio and
-- date, so concurrent or repeated runs are not safe (problem says why).
-- What to do: `pnl migrate` (after `pnl dedupe` if duplicates exist).
-- Zero rows = healthy. Run it with: psql "$DATABASE_URL" -f sql/verify/unique_constraint.sql
SELECT 'uq_portfolio_snapshot_date' AS constraint_name,
       CASE WHEN c.oid IS NULL THEN 'missing'
            WHEN NOT c.convalidated THEN 'not validated'
            WHEN i.indexrelid IS NULL OR NOT i.indisvalid THEN 'index not valid'
            WHEN pg_get_constraintdef(c.oid) <> 'UNIQUE (portfolio_id, snapshot_date)'
                 THEN 'wrong definition: ' || pg_get_constraintdef(c.oid)
       END AS problem
  FROM (SELECT 1) AS one
  LEFT JOIN pg_constraint AS c
    ON c.conname = 'uq_portfolio_snapshot_date'
   AND c.conrelid = 'portfolio_snapshots'::regclass
  LEFT JOIN pg_index AS i ON i.indexrelid = c.conindid
 WHERE c.oid IS NULL
    OR NOT c.convalidated
    OR i.indexrelid IS NULL
    OR NOT i.indisvalid
    OR pg_get_constraintdef(c.oid) <> 'UNIQUE (portfolio_id, snapshot_date)';
