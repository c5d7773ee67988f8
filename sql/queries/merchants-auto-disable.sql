-- Merchants with no successful attempt for the given interval, disabled; several daemons
-- may run this at once, and each row is returned to only one of them.
UPDATE notify_merchants
   SET enabled = false, disabled_reason = $2, updated_at = now()
 WHERE enabled AND failing_since IS NOT NULL AND failing_since < now() - make_interval(secs => $1)
RETURNING id, failing_since
