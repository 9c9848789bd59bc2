-- connected_processes: which of these pnl processes still have a session on
-- the server. Every pnl connection names its process in application_name
-- ('pnl/<pid>', pnl/db.py connect_pool). A run's process that looks gone on
-- this host (no such pid) but still has a session is alive elsewhere (a
-- machine or container with the same host name): it is not treated as dead.
--
-- $1 application names (text[]: 'pnl/<pid>')
-- Returns one row per name with a session: application_name
SELECT DISTINCT a.application_name
  FROM pg_stat_activity AS a
 WHERE a.application_name = ANY($1::text[]);
