-- find_unknown_portfolios: the requested portfolio ids that do not exist
-- (the batch refuses to start when any does: a typo must not pass silently).
--
-- $1 requested ids (bigint[])
-- Returns: id (bigint), one row per unknown id
SELECT r.id
  FROM unnest($1::bigint[]) AS r(id)
 WHERE NOT EXISTS (SELECT 1 FROM portfolios AS p WHERE p.id = r.id)
 ORDER BY r.id;
