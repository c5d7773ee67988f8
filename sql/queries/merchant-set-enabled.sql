-- Enabling a disabled merchant forgets its failing streak: it starts afresh.
-- Asking for the state it is in already (a stale console row, a script run
-- twice) changes nothing: a disabled merchant keeps the reason it was first
-- disabled for (an auto-disable's), an enabled one its failing streak.
-- (Right of SET, the columns are the row as it was.)
UPDATE notify_merchants
   SET enabled = $2,
       disabled_reason = CASE WHEN $2 THEN NULL WHEN enabled THEN $3 ELSE disabled_reason END,
       failing_since = CASE WHEN $2 AND NOT enabled THEN NULL ELSE failing_since END,
       updated_at = now()
 WHERE id = $1
RETURNING id
