-- 0013_equity_as_of_follows_snapshots: portfolios.equity_as_of (0012) is
-- cleared by the database itself whenever the snapshot it names, or one
-- before it, stops being a complete snapshot: a DELETE, a TRUNCATE, or an
-- UPDATE that makes it incomplete or moves it to another date or portfolio,
-- by any role and any program (a hand edit, an old pnl, a cleanup script).
-- Why (measured, docs/scaling.md section 5.0000): since 0012 a run plans each
-- chain's end from equity_as_of. Snapshots deleted or truncated behind pnl's
-- back (equity untouched, so 0012's guard did not fire) left it naming a date
-- with no snapshot, and a run of that date planned nothing and called it done.
-- pnl then re-checked with one probe of uq_portfolio_snapshot_date per
-- portfolio, twice per run: a re-run of 100k portfolios went 0.48 -> 0.66 s.
-- With these triggers a non-NULL equity_as_of names a complete snapshot, so
-- the run trusts it without a probe (NULL: it probes, as before).
-- What is NOT caught: equity_as_of itself set by hand to a date without a
-- complete snapshot, and changes made with triggers off (session_replication_role
-- = replica, ALTER TABLE ... DISABLE TRIGGER). `pnl verify` reports both
-- (equity_as_of_mismatch); setting the column to NULL is always safe.
-- Cost: pnl's hot path does not pay. Its writes insert snapshots and finalize
-- claims (is_complete false -> true: the UPDATE trigger's WHEN is false, no
-- call); its DELETEs (releasing or cleaning up claims, undo) fire one
-- statement-level call that finds nothing to clear (claims lie after the
-- chain's end; undo sets equity_as_of before the dates it removes, in the
-- same statement).
-- The functions run with the caller's rights: a role that deletes snapshots
-- needs UPDATE (equity_as_of) on portfolios (pnl's batch role has it since
-- 0012); without it the DELETE fails, changing nothing. Their search_path is
-- pinned to this schema (then pg_temp): a session's temporary table named
-- portfolios cannot take the update meant for the real one.
-- Then, once: every equity_as_of that already names no complete snapshot is
-- set to NULL (one probe per portfolio with a date; it changes only wrong rows).
-- Locks: CREATE OR REPLACE TRIGGER takes SHARE ROW EXCLUSIVE on
-- portfolio_snapshots until commit (reads go on; writes wait), also when the
-- migration is run again (DROP TRIGGER would take ACCESS EXCLUSIVE): through the
-- one-time check, one index probe per portfolio with a date (seconds per
-- million portfolios, however deep the history). Run it while no batch runs:
-- the check's row locks on portfolios would otherwise wait for the batch
-- (lock_timeout: it stops, changing nothing, and is simply run again).
-- Rollback: drops the triggers and functions; loses nothing stored.
-- depends: 0012_equity_as_of

SET lock_timeout = '5s';
SET statement_timeout = '15min';

CREATE OR REPLACE FUNCTION pnl_equity_as_of_forget_removed() RETURNS trigger
    LANGUAGE plpgsql AS $forget$
BEGIN
    -- a row on or before the date equity_as_of names is gone (DELETE: the
    -- transition table gone; any row, a claim too: clearing is always safe)
    UPDATE portfolios AS p
       SET equity_as_of = NULL
      FROM (SELECT g.portfolio_id, min(g.snapshot_date) AS first_date
              FROM gone AS g
             GROUP BY g.portfolio_id) AS r
     WHERE p.id = r.portfolio_id
       AND p.equity_as_of >= r.first_date;
    RETURN NULL;
END
$forget$;

CREATE OR REPLACE FUNCTION pnl_equity_as_of_forget_changed() RETURNS trigger
    LANGUAGE plpgsql AS $forget$
BEGIN
    -- a complete snapshot stopped being one, or moved (UPDATE, one row)
    UPDATE portfolios AS p
       SET equity_as_of = NULL
     WHERE p.id = OLD.portfolio_id
       AND p.equity_as_of >= OLD.snapshot_date;
    RETURN NULL;
END
$forget$;

CREATE OR REPLACE FUNCTION pnl_equity_as_of_forget_all() RETURNS trigger
    LANGUAGE plpgsql AS $forget$
BEGIN
    -- the snapshot table was truncated
    UPDATE portfolios SET equity_as_of = NULL WHERE equity_as_of IS NOT NULL;
    RETURN NULL;
END
$forget$;

CREATE OR REPLACE TRIGGER trg_snapshots_delete_forgets_equity_as_of
    AFTER DELETE ON portfolio_snapshots
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT
    EXECUTE FUNCTION pnl_equity_as_of_forget_removed();

CREATE OR REPLACE TRIGGER trg_snapshots_update_forgets_equity_as_of
    AFTER UPDATE OF is_complete, snapshot_date, portfolio_id ON portfolio_snapshots
    FOR EACH ROW
    WHEN (OLD.is_complete
          AND (NEW.is_complete IS NOT TRUE
               OR NEW.snapshot_date IS DISTINCT FROM OLD.snapshot_date
               OR NEW.portfolio_id IS DISTINCT FROM OLD.portfolio_id))
    EXECUTE FUNCTION pnl_equity_as_of_forget_changed();

CREATE OR REPLACE TRIGGER trg_snapshots_truncate_forgets_equity_as_of
    AFTER TRUNCATE ON portfolio_snapshots
    FOR EACH STATEMENT
    EXECUTE FUNCTION pnl_equity_as_of_forget_all();

DO $pin$
BEGIN
    EXECUTE format('ALTER FUNCTION pnl_equity_as_of_forget_removed() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION pnl_equity_as_of_forget_changed() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION pnl_equity_as_of_forget_all() SET search_path = %I, pg_temp', current_schema());
END
$pin$;

-- Once: what is already wrong (the triggers keep it right from here on).
-- (A scalar probe per portfolio, not NOT EXISTS: that may be planned as an
-- anti-join reading every snapshot of the table.)
UPDATE portfolios AS p
   SET equity_as_of = NULL
 WHERE p.equity_as_of IS NOT NULL
   AND (SELECT s.is_complete FROM portfolio_snapshots AS s
         WHERE s.portfolio_id = p.id
           AND s.snapshot_date = p.equity_as_of) IS NOT TRUE;
