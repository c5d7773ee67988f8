-- The attempts of one notification, in the order they were made (ladders in
-- the order they started). Bound to its created_at: one partition.
-- $1 id, $2 created_at (the notification row's, as text to the microsecond).
SELECT a.run, a.attempt, a.tier, (extract(epoch FROM a.started_at) * 1000)::float8 AS started_ms, a.duration_ms,
       a.http_status, a.outcome, a.skip_reason, a.error, a.answer
  FROM notify_attempts a
  LEFT JOIN notify_runs r ON r.notification_id = a.notification_id AND r.created_at = a.created_at AND r.run = a.run
 WHERE a.notification_id = $1 AND a.created_at = $2::timestamptz
 ORDER BY COALESCE(r.started_at, a.started_at), a.run, a.attempt
