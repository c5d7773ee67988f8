-- The newest secret sealed already that still signs for a standard merchant, to check that a key opens what is
-- sealed now before sealing more with it (older rows may still be under a key replaced since).
SELECT s.merchant_id, s.secret
  FROM notify_merchant_secrets s
  JOIN notify_merchants m ON m.id = s.merchant_id
 WHERE s.encrypted AND m.signing_scheme = 'standard' AND (s.expires_at IS NULL OR s.expires_at > now())
 ORDER BY s.created_at DESC
 LIMIT 1
