-- What a batch says about each notification, folded in. Records arrive in any
-- order: the status is replaced only by a later event (at the same instant an
-- end beats the start), the last attempt only by a later one; the attempt
-- count grows by the attempts that were new; what was known is kept.
-- Times are ms epoch; a NULL status means "no status event in this batch".
INSERT INTO notify_notifications AS n
       (id, created_at, merchant, producer, url, status, status_at, dead_reason, attempts,
        last_attempt_at, last_status, last_error, delivered_at, dead_at, content)
SELECT u.id, to_timestamp(u.created_ms / 1000.0), u.merchant, u.producer, u.url, COALESCE(u.status, 'pending'),
       to_timestamp(u.status_ms / 1000.0), u.dead_reason, u.attempts, to_timestamp(u.last_attempt_ms / 1000.0),
       u.last_status, u.last_error, to_timestamp(u.delivered_ms / 1000.0), to_timestamp(u.dead_ms / 1000.0), u.content
  FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[], $8::text[],
              $9::int[], $10::float8[], $11::int[], $12::text[], $13::float8[], $14::float8[], $15::text[])
       AS u(id, created_ms, merchant, producer, url, status, status_ms, dead_reason, attempts, last_attempt_ms,
            last_status, last_error, delivered_ms, dead_ms, content)
ON CONFLICT (id, created_at) DO UPDATE SET
  merchant = COALESCE(n.merchant, EXCLUDED.merchant),
  producer = COALESCE(n.producer, EXCLUDED.producer),
  url = CASE WHEN n.content IS NULL AND EXCLUDED.content IS NOT NULL THEN EXCLUDED.url ELSE n.url END,
  content = COALESCE(n.content, EXCLUDED.content),
  attempts = n.attempts + EXCLUDED.attempts,
  status = CASE WHEN EXCLUDED.status_at IS NOT NULL AND (n.status_at IS NULL OR EXCLUDED.status_at > n.status_at
                     OR (EXCLUDED.status_at = n.status_at AND n.status = 'pending' AND EXCLUDED.status <> 'pending'))
                THEN EXCLUDED.status ELSE n.status END,
  dead_reason = CASE WHEN EXCLUDED.status_at IS NOT NULL AND (n.status_at IS NULL OR EXCLUDED.status_at > n.status_at
                     OR (EXCLUDED.status_at = n.status_at AND n.status = 'pending' AND EXCLUDED.status <> 'pending'))
                THEN EXCLUDED.dead_reason ELSE n.dead_reason END,
  status_at = CASE WHEN EXCLUDED.status_at IS NOT NULL AND (n.status_at IS NULL OR EXCLUDED.status_at > n.status_at)
                THEN EXCLUDED.status_at ELSE n.status_at END,
  last_attempt_at = CASE WHEN EXCLUDED.last_attempt_at IS NOT NULL AND (n.last_attempt_at IS NULL OR EXCLUDED.last_attempt_at >= n.last_attempt_at)
                THEN EXCLUDED.last_attempt_at ELSE n.last_attempt_at END,
  last_status = CASE WHEN EXCLUDED.last_attempt_at IS NOT NULL AND (n.last_attempt_at IS NULL OR EXCLUDED.last_attempt_at >= n.last_attempt_at)
                THEN EXCLUDED.last_status ELSE n.last_status END,
  last_error = CASE WHEN EXCLUDED.last_attempt_at IS NOT NULL AND (n.last_attempt_at IS NULL OR EXCLUDED.last_attempt_at >= n.last_attempt_at)
                THEN EXCLUDED.last_error ELSE COALESCE(n.last_error, EXCLUDED.last_error) END,
  delivered_at = GREATEST(n.delivered_at, EXCLUDED.delivered_at),
  dead_at = GREATEST(n.dead_at, EXCLUDED.dead_at),
  updated_at = clock_timestamp()
