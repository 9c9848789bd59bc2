-- earliest_report_date: a date on or before every date a run can report, so
-- that batch/claim_owed_dates.sql can skip the forward probe for where a chain
-- starts wherever that cannot change the report ($8 there). A run reports its
-- start date, later dates, and each selected portfolio's owed dates, which all
-- come after the portfolio's chain end: portfolios.equity_as_of where set (the
-- date of the snapshot equity was set from), else a backward probe of its
-- latest complete snapshot (a portfolio without one adds no earlier date).
-- It is a lower bound as long as equity_as_of is right (pnl verify checks it)
-- and no undo moves a chain end back while the run goes on; if not, only the
-- report's split between already_done and before_chain can be off, for a chain
-- ending in between, never what is computed or written.
-- Run it after batch/plan_chunk_statements.sql, in the same transaction (the
-- probes have an index path; the statistics may not know the snapshots).
--
-- $1 the run's start date (date)   $2 only these ids (bigint[]; NULL: every portfolio)
-- Returns one row: earliest (date)
SELECT LEAST($1::date, min(e.end_date) + 1) AS earliest
  FROM (SELECT COALESCE(pf.equity_as_of,
                        (SELECT s.snapshot_date FROM portfolio_snapshots AS s
                          WHERE s.portfolio_id = pf.id AND s.is_complete
                          ORDER BY s.snapshot_date DESC LIMIT 1)) AS end_date
          FROM portfolios AS pf
         WHERE $2::bigint[] IS NULL OR pf.id = ANY ($2::bigint[])) AS e;
