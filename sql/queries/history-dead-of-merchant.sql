-- A merchant's dead notifications created in [since, until), with what a
-- resend needs, oldest first, keyset on (created_at, id) from $4/$5
-- (the partial index on dead rows; the window prunes the day partitions).
-- $1 merchant, $2 since, $3 until, $4 after created_at (text), $5 after id, $6 how many rows.
SELECT id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_key, content
  FROM notify_notifications
 WHERE status = 'dead' AND merchant = $1
   AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
   AND ($4::timestamptz IS NULL OR (created_at, id) > ($4::timestamptz, $5::text))
 ORDER BY created_at, id
 LIMIT $6
