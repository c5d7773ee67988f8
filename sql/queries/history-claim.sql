-- Claims a notification for a new ladder (resend, recover) before it is
-- published, atomically: two resends racing (or a client retrying one) see
-- each other here, not seconds later through the recorder. The row is locked
-- (FOR UPDATE reads its latest committed version), checked, then marked
-- pending at the ladder's own start time $3: the run record of the new
-- ladder ties with it (no change) and the new ladder's end (a tier's clock,
-- after the publish) is later, so it always wins the recorder's ordering.
-- No row: unknown, or its status is not in $4 (e.g. still pending).
-- $1 id, $2 created_at (text, to the microsecond), $3 start (ms epoch), $4 statuses that may be claimed.
WITH old AS (
  SELECT id, created_at, status, status_at, status_run_at, dead_reason
    FROM notify_notifications
   WHERE id = $1 AND created_at = $2::timestamptz
     FOR UPDATE
)
UPDATE notify_notifications AS n
   SET status = 'pending', status_at = to_timestamp($3::float8 / 1000.0), status_run_at = to_timestamp($3::float8 / 1000.0),
       dead_reason = NULL, updated_at = clock_timestamp()
  FROM old
 WHERE n.id = old.id AND n.created_at = old.created_at AND old.status = ANY($4::text[])
RETURNING old.status AS previous_status,
          to_char(old.status_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS previous_status_at,
          to_char(old.status_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS previous_status_run_at,
          old.dead_reason AS previous_dead_reason
