UPDATE notify_merchants
   SET name = $2, signing_scheme = $3, allowed_origins = $4, max_concurrency = $5, max_attempts = $6, success = $7, updated_at = now()
 WHERE id = $1
RETURNING id
