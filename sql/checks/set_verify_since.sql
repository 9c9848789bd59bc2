-- set_verify_since: bound the date-bounded checks in sql/verify/ to snapshots
-- and marks on or after $1, for the rest of this transaction (the custom
-- setting pnl.verify_since, read by those checks; unset or '' = a full check).
-- `pnl verify --since DATE` runs it first; with psql, the same bound is
--   psql "$DATABASE_URL" -c "SET pnl.verify_since = '2026-11-01'" -f sql/verify/broken_equity_chain.sql
--
-- $1 the first date to check (date; NULL = everything)
-- Returns: the setting's new value (text)
SELECT set_config('pnl.verify_since', COALESCE($1::date::text, ''), true);
