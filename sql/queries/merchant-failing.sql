-- A worker saw the merchant fail ($2 true) or succeed ($2 false); written only
-- when it changes the stored state (a transition, never one write per
-- attempt), and then every process hears of it.
WITH changed AS (
  UPDATE notify_merchants
     SET failing_since = CASE WHEN $2 THEN now() ELSE NULL END
   WHERE id = $1 AND (failing_since IS NULL) = $2
  RETURNING id
)
SELECT pg_notify('notify_merchants', id) FROM changed
