-- For a batch of parked copies (a redrive), what the history knows of each
-- notification since: its status, when that status was set and when its
-- latest ladder started (ms epoch). A notification the history does not
-- know has no row.
-- $1 ids, $2 their created_at (ms epoch), same order.
SELECT n.id,
       n.status,
       EXTRACT(EPOCH FROM n.status_at) * 1000 AS status_ms,
       (SELECT EXTRACT(EPOCH FROM max(r.started_at)) * 1000
          FROM notify_runs r
         WHERE r.notification_id = n.id AND r.created_at = n.created_at) AS last_run_ms
  FROM unnest($1::text[], $2::float8[]) AS b(id, created_ms)
  JOIN notify_notifications n ON n.id = b.id AND n.created_at = to_timestamp(b.created_ms / 1000.0)
