-- Gives back a redrive's claims of copies it did not move after all (their
-- publish failed), each only while the claim still stands: pending as of
-- the redrive's start $6 (a newer record replaced nothing). Run after
-- history-lock-parked.sql, in its transaction.
-- $1 ids, $2 created_at (text, to the microsecond), $3 previous statuses,
-- $4 previous status_at (text or null), $5 previous dead_reason, $7 previous
-- status_run_at (text or null), same order.
UPDATE notify_notifications AS n
   SET status = b.status, status_at = b.status_at, status_run_at = b.status_run_at, dead_reason = b.dead_reason, updated_at = clock_timestamp()
  FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::text[], $7::timestamptz[])
       AS b(id, created_at, status, status_at, dead_reason, status_run_at)
 WHERE n.id = b.id AND n.created_at = b.created_at
   AND n.status = 'pending' AND n.status_at = to_timestamp($6::float8 / 1000.0)
