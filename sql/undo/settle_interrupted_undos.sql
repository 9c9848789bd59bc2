-- settle_interrupted_undos: after an undo run finished, the interrupted undo
-- runs it completed are marked 'done', with finished_by in their summary, so
-- that `pnl status` stops calling them UNFINISHED. It completed one when it
-- was asked for at least as much: a from date on or before the interrupted
-- run's, and every portfolio (no scope) or a set that contains the interrupted
-- run's. The interrupted run's scope is what undo/record_undo_scope.sql
-- recorded as it started; a run without one (started before that was
-- recorded) is left as it is. Its archive is untouched: `pnl batch undo
-- --restore` of it works as before.
--
-- $1 the undo run that finished (bigint)
-- $2 the interrupted runs to look at (bigint[]: ended, or their process gone)
-- $3 the finished undo's from date (date)
-- $4 its portfolios (bigint[]; NULL = every portfolio)
-- Returns one row per run marked done: id
UPDATE rescue_runs AS r
   SET status = 'done',
       finished_at = now(),
       summary = r.summary || jsonb_build_object('finished_by', $1::bigint)
 WHERE r.id = ANY($2::bigint[])
   AND r.id < $1::bigint
   AND r.kind = 'undo'
   AND r.status IN ('running', 'failed')
   AND r.summary ? 'from'
   AND (r.summary->>'from')::date >= $3::date
   AND ($4::bigint[] IS NULL
        OR (jsonb_typeof(r.summary->'scope') = 'array'
            AND NOT EXISTS (SELECT 1
                              FROM jsonb_array_elements_text(r.summary->'scope') AS k(portfolio_id)
                             WHERE k.portfolio_id::bigint <> ALL ($4::bigint[]))))
RETURNING r.id;
