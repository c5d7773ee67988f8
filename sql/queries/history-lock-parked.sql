-- Locks the history rows of a batch of parked copies (a redrive's) until its
-- transaction ends, in the recorder's order (history-upsert-notifications.sql),
-- so the two never deadlock. Locked in a statement of its own: a SELECT ...
-- FOR UPDATE that waits for a lock reads the locked row anew but the rest of
-- the statement (the ladders in notify_runs) as it was before the wait; the
-- statements after this one see both as of the same moment.
-- $1 ids, $2 their created_at (ms epoch), same order.
SELECT 1
  FROM notify_notifications n
  JOIN unnest($1::text[], $2::float8[]) AS b(id, created_ms)
    ON n.id = b.id AND n.created_at = to_timestamp(b.created_ms / 1000.0)
 ORDER BY n.id COLLATE "C", n.created_at
   FOR UPDATE OF n
