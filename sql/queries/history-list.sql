-- A page of notifications, newest first, keyset on (created_at, id): $5/$6 is
-- where the previous page ended. Every filter is optional (NULL). node-pg
-- sends unnamed statements, planned with the values bound, so a NULL test
-- folds away and since/until prune the day partitions.
-- $1 merchant, $2 status, $3 since (inclusive), $4 until (exclusive),
-- $5 cursor created_at, $6 cursor id, $7 how many rows.
SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key,
       (extract(epoch FROM created_at) * 1000)::float8 AS created_ms, merchant, producer, url, status, dead_reason,
       attempts, (extract(epoch FROM last_attempt_at) * 1000)::float8 AS last_attempt_ms, last_status, last_error,
       (extract(epoch FROM delivered_at) * 1000)::float8 AS delivered_ms, (extract(epoch FROM dead_at) * 1000)::float8 AS dead_ms,
       (content IS NOT NULL) AS has_content
  FROM notify_notifications
 WHERE ($1::text IS NULL OR merchant = $1::text)
   AND ($2::text IS NULL OR status = $2::text)
   AND ($3::timestamptz IS NULL OR created_at >= $3::timestamptz)
   AND ($4::timestamptz IS NULL OR created_at < $4::timestamptz)
   AND ($5::timestamptz IS NULL OR (created_at, id) < ($5::timestamptz, $6::text))
 ORDER BY created_at DESC, id DESC
 LIMIT $7
