-- What a batch says about each notification, folded in. Records arrive in any
-- order: the status is replaced only by a newer event (notify_status_newer,
-- migration 004: the latest ladder's, then delivered > dead > start, then the
-- later), the last attempt only by a later one; the attempt count grows by
-- the attempts that were new; what was known is kept.
-- $1: a JSON array of rows (see NotificationRow in src/history/fold.ts); times
-- are ms epoch; a null status means "no status event in this batch".
INSERT INTO notify_notifications AS n
       (id, created_at, merchant, producer, url, status, status_at, status_run_at, dead_reason, attempts,
        last_attempt_at, last_status, last_error, delivered_at, dead_at, content)
SELECT u.id, to_timestamp(u."createdAt" / 1000.0), u.merchant, u.producer, u.url, COALESCE(u.status, 'pending'),
       to_timestamp(u."statusAt" / 1000.0), to_timestamp(u."statusRunAt" / 1000.0), u."deadReason", u.attempts, to_timestamp(u."lastAttemptAt" / 1000.0),
       u."lastStatus", u."lastError", to_timestamp(u."deliveredAt" / 1000.0), to_timestamp(u."deadAt" / 1000.0), u.content
  FROM json_to_recordset($1::json)
       AS u(id text, "createdAt" float8, merchant text, producer text, url text, status text, "statusAt" float8, "statusRunAt" float8,
            "deadReason" text, attempts int, "lastAttemptAt" float8, "lastStatus" int, "lastError" text,
            "deliveredAt" float8, "deadAt" float8, content text)
 -- Rows locked in one order, the redrive's (history-superseded.sql): the two never deadlock.
 ORDER BY u.id COLLATE "C", u."createdAt"
ON CONFLICT (id, created_at) DO UPDATE SET
  merchant = COALESCE(n.merchant, EXCLUDED.merchant),
  producer = COALESCE(n.producer, EXCLUDED.producer),
  -- '' until a record that knows the URL arrives (attempts do not repeat it).
  url = CASE WHEN EXCLUDED.url <> '' AND (n.url = '' OR (n.content IS NULL AND EXCLUDED.content IS NOT NULL)) THEN EXCLUDED.url ELSE n.url END,
  content = COALESCE(n.content, EXCLUDED.content),
  attempts = n.attempts + EXCLUDED.attempts,
  status = CASE WHEN notify_status_newer(EXCLUDED.status, EXCLUDED.status_at, EXCLUDED.status_run_at, n.status, n.status_at, n.status_run_at)
                THEN EXCLUDED.status ELSE n.status END,
  dead_reason = CASE WHEN notify_status_newer(EXCLUDED.status, EXCLUDED.status_at, EXCLUDED.status_run_at, n.status, n.status_at, n.status_run_at)
                THEN EXCLUDED.dead_reason ELSE n.dead_reason END,
  status_at = CASE WHEN notify_status_newer(EXCLUDED.status, EXCLUDED.status_at, EXCLUDED.status_run_at, n.status, n.status_at, n.status_run_at)
                THEN EXCLUDED.status_at ELSE n.status_at END,
  status_run_at = CASE WHEN notify_status_newer(EXCLUDED.status, EXCLUDED.status_at, EXCLUDED.status_run_at, n.status, n.status_at, n.status_run_at)
                THEN EXCLUDED.status_run_at ELSE n.status_run_at END,
  last_attempt_at = CASE WHEN EXCLUDED.last_attempt_at IS NOT NULL AND (n.last_attempt_at IS NULL OR EXCLUDED.last_attempt_at >= n.last_attempt_at)
                THEN EXCLUDED.last_attempt_at ELSE n.last_attempt_at END,
  last_status = CASE WHEN EXCLUDED.last_attempt_at IS NOT NULL AND (n.last_attempt_at IS NULL OR EXCLUDED.last_attempt_at >= n.last_attempt_at)
                THEN EXCLUDED.last_status ELSE n.last_status END,
  last_error = CASE WHEN EXCLUDED.last_attempt_at IS NOT NULL AND (n.last_attempt_at IS NULL OR EXCLUDED.last_attempt_at >= n.last_attempt_at)
                THEN EXCLUDED.last_error ELSE COALESCE(n.last_error, EXCLUDED.last_error) END,
  delivered_at = GREATEST(n.delivered_at, EXCLUDED.delivered_at),
  dead_at = GREATEST(n.dead_at, EXCLUDED.dead_at),
  updated_at = clock_timestamp()
