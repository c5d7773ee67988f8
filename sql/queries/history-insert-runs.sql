-- Ladders started (accepted, resent, redriven), one row each; a repeat is a no-op.
-- $1: a JSON array of {id, createdAt, run, at, via, producer}; times are ms epoch.
INSERT INTO notify_runs (notification_id, created_at, run, started_at, via, producer)
SELECT u.id, to_timestamp(u."createdAt" / 1000.0), u.run, to_timestamp(u.at / 1000.0), u.via, u.producer
  FROM json_to_recordset($1::json) AS u(id text, "createdAt" float8, run text, at float8, via text, producer text)
ON CONFLICT DO NOTHING
