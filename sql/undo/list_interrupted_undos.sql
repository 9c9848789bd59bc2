-- list_interrupted_undos: undo runs older than this one that did not end as
-- 'done' or 'restored' (killed mid-way: 'running'; stopped: 'failed'), with
-- the host and pid of their process, so the caller can tell a dead one (its
-- process gone on this host) from one still running.
--
-- $1 this undo run's id (bigint)
-- Returns: id bigint, status text, host text, pid bigint; oldest first
SELECT r.id, r.status, r.host, r.pid
  FROM rescue_runs AS r
 WHERE r.kind = 'undo'
   AND r.status IN ('running', 'failed')
   AND r.id < $1::bigint
 ORDER BY r.id;
