-- 0012_equity_as_of: portfolios.equity_as_of, the date of the complete
-- snapshot whose NAV equity_balance was last set from (NULL: not set from a
-- snapshot: a new portfolio's capital, a legacy or hand-made value, or a
-- value set before this migration).
-- Why (measured, docs/scaling.md section 5.0): `pnl status` found each chain's
-- end with one probe of uq_portfolio_snapshot_date per portfolio; at 250
-- price dates of history (25 M snapshots at 100k portfolios) the index no
-- longer fits in memory and status took 1.15 s, growing with depth. Every pnl
-- statement that sets equity_balance now sets equity_as_of with it, in the
-- same statement, so status reads the chain ends from portfolios alone and
-- probes only where equity_as_of is NULL. `pnl verify` (equity_mismatch)
-- reports a portfolio whose equity_as_of is not its latest complete
-- snapshot's date.
-- No backfill: NULL is a valid value (status probes, as before). The next
-- batch run sets it for every portfolio it writes.
-- A guard for writers that do not know the column (a pnl older than 0012
-- still running on another host, the legacy batch's `equity_balance +=`, a
-- hand edit): trigger trg_portfolios_equity_as_of_guard sets equity_as_of to
-- NULL when an UPDATE changes equity_balance and leaves equity_as_of as it
-- was, so status probes that portfolio instead of trusting a stale date. Its
-- WHEN clause is evaluated without calling the function: pnl's own writes set
-- a new date with the new equity and never call it (a repair that re-computes
-- the latest date in place does, and leaves NULL: status probes).
-- Locks: ADD COLUMN of a nullable column without a default is catalog-only
-- (ACCESS EXCLUSIVE for milliseconds, no rewrite, no scan); CREATE TRIGGER
-- takes SHARE ROW EXCLUSIVE for milliseconds (reads go on).
-- Privileges: a role that may UPDATE equity_balance (column grant, e.g. the
-- batch role of sql/roles/create_roles.sql) may UPDATE equity_as_of too:
-- without that the batch would fail with "permission denied" after this
-- migration until create_roles.sql were run again.
-- depends: 0011_snapshot_fillfactor

SET lock_timeout = '5s';
SET statement_timeout = '60s';

ALTER TABLE portfolios ADD COLUMN IF NOT EXISTS equity_as_of date;

COMMENT ON COLUMN portfolios.equity_as_of IS
    'date of the complete snapshot whose NAV equity_balance was set from; NULL: not set from a snapshot';

CREATE OR REPLACE FUNCTION pnl_equity_as_of_guard() RETURNS trigger
    LANGUAGE plpgsql AS $guard$
BEGIN
    -- equity changed by a statement that did not say which snapshot it came from
    NEW.equity_as_of := NULL;
    RETURN NEW;
END
$guard$;

DROP TRIGGER IF EXISTS trg_portfolios_equity_as_of_guard ON portfolios;
CREATE TRIGGER trg_portfolios_equity_as_of_guard
    BEFORE UPDATE OF equity_balance ON portfolios
    FOR EACH ROW
    WHEN (NEW.equity_as_of IS NOT NULL
          AND NEW.equity_as_of IS NOT DISTINCT FROM OLD.equity_as_of
          AND NEW.equity_balance IS DISTINCT FROM OLD.equity_balance)
    EXECUTE FUNCTION pnl_equity_as_of_guard();

DO $grant$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee::regrole::text
          FROM pg_attribute AS att, aclexplode(att.attacl) AS a
         WHERE att.attrelid = 'portfolios'::regclass
           AND att.attname = 'equity_balance'
           AND a.privilege_type = 'UPDATE'
           AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT UPDATE (equity_as_of) ON portfolios TO %s', grantee);
    END LOOP;
END
$grant$;
