-- Ladders started (accepted, resent, redriven), one row each; a repeat is a no-op.
-- Times are ms epoch.
INSERT INTO notify_runs (notification_id, created_at, run, started_at, via, producer)
SELECT u.id, to_timestamp(u.created_ms / 1000.0), u.run, to_timestamp(u.at_ms / 1000.0), u.via, u.producer
  FROM unnest($1::text[], $2::float8[], $3::text[], $4::float8[], $5::text[], $6::text[])
       AS u(id, created_ms, run, at_ms, via, producer)
ON CONFLICT DO NOTHING
