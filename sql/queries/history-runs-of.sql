-- The ladders of one notification (accepted, resent, recovered, redriven), oldest first.
-- $1 id, $2 created_at (as text to the microsecond): one partition.
SELECT run, (extract(epoch FROM started_at) * 1000)::float8 AS started_ms, via, producer
  FROM notify_runs
 WHERE notification_id = $1 AND created_at = $2::timestamptz
 ORDER BY started_at, run
