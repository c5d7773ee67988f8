-- One notification by id. The id alone does not name a partition: each day's
-- primary key (id, created_at) is probed, one index lookup per kept day.
-- Should one id have been used on several days (a client reusing ids), the
-- newest is the one shown.
SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key,
       (extract(epoch FROM created_at) * 1000)::float8 AS created_ms, merchant, producer, url, status, dead_reason,
       attempts, (extract(epoch FROM last_attempt_at) * 1000)::float8 AS last_attempt_ms, last_status, last_error,
       (extract(epoch FROM delivered_at) * 1000)::float8 AS delivered_ms, (extract(epoch FROM dead_at) * 1000)::float8 AS dead_ms,
       content
  FROM notify_notifications
 WHERE id = $1
 ORDER BY created_at DESC
 LIMIT 1
