-- Gives back a claim whose ladder never reached the broker: the status it
-- had, unless something newer (a record of another ladder) replaced the claim.
-- $1 id, $2 created_at (text), $3 the claim's start (ms epoch), $4 previous status,
-- $5 previous status_at (text or null), $6 previous dead_reason, $7 previous status_run_at (text or null).
UPDATE notify_notifications
   SET status = $4, status_at = $5::timestamptz, status_run_at = $7::timestamptz, dead_reason = $6, updated_at = clock_timestamp()
 WHERE id = $1 AND created_at = $2::timestamptz
   AND status = 'pending' AND status_at = to_timestamp($3::float8 / 1000.0)
