-- The partition functions of 002 locked the three parents in the order
-- notifications, runs, attempts; the recorder's transaction writes runs,
-- attempts, then notifications (src/history/writer.ts). Creating or dropping
-- a partition takes an exclusive lock on its parent, so a retention run
-- meeting a batch between its first and last statement deadlocked with it
-- (PostgreSQL broke it by failing one). The same order as the recorder's:
-- the job now waits for the batch instead.

CREATE OR REPLACE FUNCTION notify_history_add_day(day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
  suffix text := to_char(day, 'YYYYMMDD');
  parent text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('notify_history_partitions'));
  FOREACH parent IN ARRAY ARRAY['notify_runs', 'notify_attempts', 'notify_notifications'] LOOP
    IF to_regclass(parent || '_' || suffix) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', parent || '_' || suffix, parent, lo, hi);
    END IF;
  END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION notify_history_drop_before(cutoff timestamptz) RETURNS SETOF date
LANGUAGE plpgsql AS $$
DECLARE
  d date;
  parent text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('notify_history_partitions'));
  FOR d IN
    SELECT DISTINCT to_date(substring(c.relname FROM '_(\d{8})$'), 'YYYYMMDD') AS day
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.relname IN ('notify_notifications', 'notify_runs', 'notify_attempts')
       AND c.relname ~ '_\d{8}$'
     ORDER BY 1
  LOOP
    EXIT WHEN ((d + 1)::timestamp AT TIME ZONE 'UTC') > cutoff;
    FOREACH parent IN ARRAY ARRAY['notify_runs', 'notify_attempts', 'notify_notifications'] LOOP
      EXECUTE format('DROP TABLE IF EXISTS %I', parent || '_' || to_char(d, 'YYYYMMDD'));
    END LOOP;
    RETURN NEXT d;
  END LOOP;
END;
$$;
