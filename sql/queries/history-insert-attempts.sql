-- Attempts, one row each; a repeat is a no-op. Returns the rows that are new,
-- so each notification's attempt count grows by those only.
-- $1: a JSON array of {id, createdAt, run, attempt, tier, startedAt, durationMs,
-- status, outcome, skipReason, error, answer}; times are ms epoch.
INSERT INTO notify_attempts (notification_id, created_at, run, attempt, tier, started_at, finished_at, duration_ms,
                             http_status, outcome, skip_reason, error, answer)
SELECT u.id, to_timestamp(u."createdAt" / 1000.0), u.run, u.attempt, u.tier, to_timestamp(u."startedAt" / 1000.0),
       to_timestamp((u."startedAt" + u."durationMs") / 1000.0), u."durationMs", u.status, u.outcome, u."skipReason",
       u.error, u.answer
  FROM json_to_recordset($1::json) AS u(id text, "createdAt" float8, run text, attempt int, tier int, "startedAt" float8,
                                        "durationMs" int, status int, outcome text, "skipReason" text, error text, answer text)
ON CONFLICT DO NOTHING
RETURNING notification_id, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms
