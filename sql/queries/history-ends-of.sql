-- The attempts of one notification that ended a ladder (delivered or parked),
-- for a claim given back: what its ladders' ends said while the claim stood
-- and lost to it applies again. Bound to its created_at: one partition.
-- $1 id, $2 created_at (text, to the microsecond).
SELECT run, (extract(epoch FROM finished_at) * 1000)::float8 AS end_ms, outcome
  FROM notify_attempts
 WHERE notification_id = $1 AND created_at = $2::timestamptz AND outcome IN ('success', 'dead')
