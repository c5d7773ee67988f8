-- For a batch of parked copies (a redrive), what the history knows of each
-- notification since: its status, when that status was set and when its
-- ladder started (null: not known), and when the latest ladder other than
-- the copy's own started (ms epoch, whole); and what a claim replaces (key,
-- status_at and status_run_at to the microsecond, dead_reason). One row per
-- copy (ord: its place in the batch); a notification the history does not
-- know has none. Run after history-lock-parked.sql, in its transaction.
-- $1 ids, $2 their created_at (ms epoch), $3 the copies' own ladders ('' for none), same order.
SELECT b.ord,
       n.status,
       round(EXTRACT(EPOCH FROM n.status_at) * 1000)::bigint AS status_ms,
       round(EXTRACT(EPOCH FROM n.status_run_at) * 1000)::bigint AS status_run_ms,
       (SELECT round(EXTRACT(EPOCH FROM max(r.started_at)) * 1000)::bigint
          FROM notify_runs r
         WHERE r.notification_id = n.id AND r.created_at = n.created_at AND r.run <> b.run) AS other_run_ms,
       to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS key,
       to_char(n.status_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS status_at,
       to_char(n.status_run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS status_run_at,
       n.dead_reason
  FROM unnest($1::text[], $2::float8[], $3::text[]) WITH ORDINALITY AS b(id, created_ms, run, ord)
  JOIN notify_notifications n ON n.id = b.id AND n.created_at = to_timestamp(b.created_ms / 1000.0)
