-- create_roles: the three roles pnl runs as, with only the privileges each needs.
-- A psql script for a DBA to read and run; pnl itself never runs it.
--
--   psql "postgresql://admin@db/pnl" -v owner=pnl_owner -v batch=pnl_batch -v readonly=pnl_readonly \
--        -f sql/roles/create_roles.sql
--
-- Run it connected to the pnl database (grants are per database), as a superuser
-- or a role with CREATEROLE that is a member of the owner role (ALTER DEFAULT
-- PRIVILEGES FOR ROLE needs that). The -v names are optional (defaults above).
-- Add -v adopt=true once to hand an existing database's tables (built by
-- another role, e.g. a legacy database or one migrated as postgres) to the owner.
--
-- Idempotent: it creates what is missing and (re)grants; run it again at will.
-- RE-RUN IT AFTER EVERY `pnl migrate` THAT ADDS A TABLE: new tables get SELECT
-- for batch and readonly automatically (default privileges), but the batch
-- role's write privileges are granted table by table from the list below, and
-- a table that does not exist yet is skipped. When a migration adds a table the
-- batch writes, add it to that list in the same change.
--
-- The roles are LOGIN roles without a password: set one (\password pnl_batch),
-- or use them as groups (GRANT pnl_batch TO some_login_user). The owner role
-- must be the one that runs `pnl migrate`, so that it owns what it creates.
--
--   owner     pnl migrate, rollback, seed, dedupe, repair (and everything else):
--             owns the tables; CREATE on the schema.
--   batch     pnl batch run, batch backfill, batch undo, cleanup: SELECT on every
--             table, and only these writes:
--               portfolio_snapshots  INSERT, UPDATE, DELETE (claim, finalize, release, cleanup)
--               portfolios           UPDATE (equity_balance, equity_as_of only: equity is set to the NAV)
--               batch_runs           INSERT, UPDATE (the run's own row)
--               rescue_runs          INSERT, UPDATE (an undo's run row)
--               snapshot_undo_audit  INSERT, UPDATE (undo archives rows; --restore marks them restored)
--               valuation_marks      INSERT (once that table exists)
--   readonly  pnl status, verify, and every --dry-run: SELECT on every table;
--             TEMPORARY on the database (a dry run executes the real statements
--             against session-private temporary copies, then rolls back).
\set ON_ERROR_STOP on
\if :{?owner}
\else
\set owner pnl_owner
\endif
\if :{?batch}
\else
\set batch pnl_batch
\endif
\if :{?readonly}
\else
\set readonly pnl_readonly
\endif
\if :{?adopt}
\else
\set adopt false
\endif

BEGIN;

-- The roles (cluster-wide), when missing.
SELECT format('CREATE ROLE %I LOGIN', r.name)
  FROM unnest(ARRAY[:'owner', :'batch', :'readonly']) AS r(name)
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r.name)
\gexec

-- Database and schema.
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I, %I, %I',
              current_database(), :'owner', :'batch', :'readonly')
\gexec
SELECT format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', current_schema(), :'owner')
\gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I, %I', current_schema(), :'batch', :'readonly')
\gexec

-- Adopt: pnl's existing tables (and yoyo's) become the owner's.
\if :adopt
SELECT format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, :'owner')
  FROM pg_class AS c
 WHERE c.relnamespace = current_schema()::regnamespace
   AND c.relkind IN ('r', 'p')
   AND c.relname IN ('portfolios', 'positions', 'market_prices', 'capital_flows', 'portfolio_snapshots',
                     'batch_runs', 'rescue_runs', 'snapshot_dedupe_audit', 'snapshot_repair_audit',
                     'snapshot_undo_audit', 'valuation_marks', 'valuation_mark_repair_audit',
                     '_yoyo_migration', '_yoyo_log', '_yoyo_version', 'yoyo_lock')
\gexec
\endif

-- Read: every table that exists now, and every table the owner creates later.
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I, %I', current_schema(), :'batch', :'readonly')
\gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I, %I',
              :'owner', current_schema(), :'batch', :'readonly')
\gexec

-- Write: the batch role, table by table (skipped while a table, or the column
-- a grant needs, does not exist yet: equity_as_of comes with migration 0012,
-- which grants it itself to whoever may update equity_balance).
SELECT format('GRANT %s ON TABLE %I.%I TO %I', w.privileges, current_schema(), w.tbl, :'batch')
  FROM (VALUES ('portfolio_snapshots', 'INSERT, UPDATE, DELETE', NULL),
               ('portfolios',          'UPDATE (equity_balance)', NULL),
               ('portfolios',          'UPDATE (equity_as_of)',   'equity_as_of'),
               ('batch_runs',          'INSERT, UPDATE',          NULL),
               ('rescue_runs',         'INSERT, UPDATE',          NULL),
               ('snapshot_undo_audit', 'INSERT, UPDATE',          NULL),
               ('valuation_marks',     'INSERT',                  NULL)) AS w(tbl, privileges, needs_column)
 WHERE to_regclass(format('%I.%I', current_schema(), w.tbl)) IS NOT NULL
   AND (w.needs_column IS NULL
        OR EXISTS (SELECT FROM pg_attribute AS att
                    WHERE att.attrelid = to_regclass(format('%I.%I', current_schema(), w.tbl))
                      AND att.attname = w.needs_column AND NOT att.attisdropped))
\gexec

COMMIT;
