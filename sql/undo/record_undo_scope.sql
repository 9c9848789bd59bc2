-- record_undo_scope: what an undo run was asked to do, recorded as it starts
-- (before its first chunk), so that a run killed part-way can be recognised as
-- completed by a later undo of the same or a wider scope
-- (undo/settle_interrupted_undos.sql).
--
-- $1 the undo's rescue run id (bigint)   $2 its from date (date)
-- $3 its portfolios (bigint[]; NULL = every portfolio)
-- Returns nothing.
UPDATE rescue_runs
   SET summary = summary || jsonb_build_object('from', $2::date, 'scope', to_jsonb($3::bigint[]))
 WHERE id = $1::bigint;
