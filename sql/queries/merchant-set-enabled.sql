-- Enabling forgets the failing streak: the merchant starts afresh.
UPDATE notify_merchants
   SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
       failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END, updated_at = now()
 WHERE id = $1
RETURNING id
