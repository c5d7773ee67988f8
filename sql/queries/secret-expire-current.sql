-- Rotation: the current secret keeps signing for the grace period ($2 seconds).
UPDATE notify_merchant_secrets
   SET expires_at = now() + make_interval(secs => $2)
 WHERE merchant_id = $1 AND expires_at IS NULL
