-- Attempts, one row each; a repeat is a no-op. Returns the rows that are new,
-- so each notification's attempt count grows by those only. Times are ms epoch.
INSERT INTO notify_attempts (notification_id, created_at, run, attempt, tier, started_at, finished_at, duration_ms,
                             http_status, outcome, skip_reason, error, answer)
SELECT u.id, to_timestamp(u.created_ms / 1000.0), u.run, u.attempt, u.tier, to_timestamp(u.started_ms / 1000.0),
       to_timestamp((u.started_ms + u.duration_ms) / 1000.0), u.duration_ms, u.http_status, u.outcome, u.skip_reason,
       u.error, u.answer
  FROM unnest($1::text[], $2::float8[], $3::text[], $4::int[], $5::int[], $6::float8[], $7::int[], $8::int[],
              $9::text[], $10::text[], $11::text[], $12::text[])
       AS u(id, created_ms, run, attempt, tier, started_ms, duration_ms, http_status, outcome, skip_reason, error, answer)
ON CONFLICT DO NOTHING
RETURNING notification_id, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms
