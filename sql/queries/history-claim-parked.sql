-- Claims the parked notifications a redrive moves back to tier 0, in the
-- transaction that read and locked them (history-superseded.sql): marked
-- pending at the new ladders' start $3, as a resend's claim is
-- (history-claim.sql), so a resend or recover before the recorder has the
-- new ladder is refused instead of starting a second one. The ladder's run
-- record ties with the claim (no change); its attempts come later.
-- $1 ids, $2 created_at (text, to the microsecond), same order; $3 start (ms epoch).
UPDATE notify_notifications AS n
   SET status = 'pending', status_at = to_timestamp($3::float8 / 1000.0), dead_reason = NULL, updated_at = clock_timestamp()
  FROM unnest($1::text[], $2::timestamptz[]) AS b(id, created_at)
 WHERE n.id = b.id AND n.created_at = b.created_at
