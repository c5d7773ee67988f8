INSERT INTO notify_merchants (id, name, enabled, signing_scheme, allowed_origins, max_concurrency, max_attempts, success)
VALUES ($1, $2, true, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO NOTHING
RETURNING id
