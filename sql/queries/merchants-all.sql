-- Every merchant with the secrets that still sign (the in-process directory).
SELECT m.id, m.name, m.enabled, m.signing_scheme, m.allowed_origins, m.max_concurrency, m.max_attempts,
       m.success, m.disabled_reason, m.failing_since, m.created_at, m.updated_at,
       COALESCE(
         (SELECT json_agg(json_build_object('seq', s.seq, 'secret', encode(s.secret, 'base64'), 'encrypted', s.encrypted,
                                            'fingerprint', s.fingerprint, 'createdAt', s.created_at, 'expiresAt', s.expires_at)
                          ORDER BY s.seq DESC)
            FROM notify_merchant_secrets s
           WHERE s.merchant_id = m.id AND (s.expires_at IS NULL OR s.expires_at > now())),
         '[]'::json) AS secrets
  FROM notify_merchants m
 WHERE $1::text IS NULL OR m.id = $1
