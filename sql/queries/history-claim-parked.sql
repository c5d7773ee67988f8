-- Claims the parked notifications a redrive moves back to tier 0, in the
-- transaction that locked and read them (history-lock-parked.sql,
-- history-superseded.sql): marked pending at the new ladders' start $3, as a
-- resend's claim is (history-claim.sql), so a resend or recover before the
-- recorder has the new ladder is refused instead of starting a second one.
-- Only rows still as they were read ($4, $5): one the recorder wrote after
-- the lock (not locked by it) and a resend claimed since is left alone, and
-- its copy held. The ladder's run record ties with the claim (no change);
-- its attempts come later.
-- $1 ids, $2 created_at (text, to the microsecond), $4 statuses and $5 status_at
-- (text or null) as read, same order; $3 start (ms epoch).
UPDATE notify_notifications AS n
   SET status = 'pending', status_at = to_timestamp($3::float8 / 1000.0), status_run_at = to_timestamp($3::float8 / 1000.0),
       dead_reason = NULL, updated_at = clock_timestamp()
  FROM unnest($1::text[], $2::timestamptz[], $4::text[], $5::timestamptz[]) AS b(id, created_at, status, status_at)
 WHERE n.id = b.id AND n.created_at = b.created_at
   AND n.status = b.status AND n.status_at IS NOT DISTINCT FROM b.status_at
RETURNING n.id, to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS key
