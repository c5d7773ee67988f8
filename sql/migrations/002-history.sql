-- Delivery history (DESIGN §11): every notification, every ladder it ran
-- (accepted, resent, redriven) and every attempt, written by the recorder
-- process only.
--
-- All three tables are partitioned by day of the notification's createdAt,
-- so a notification and everything about it live in one day's partitions and
-- retention drops whole partitions (DROP TABLE, no DELETE scan). There is no
-- foreign key: one would block dropping a partition, and history outlives a
-- deleted merchant. Days are UTC days.

CREATE TABLE notify_notifications (
  id text NOT NULL,
  -- The notification's createdAt: the partition key, and that of its runs and attempts.
  created_at timestamptz NOT NULL,
  merchant text,
  -- The ingress token that submitted it, when one did.
  producer text,
  url text NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
  -- When the event that set `status` happened: records arrive out of order
  -- (several processes publish them), and an older one never overrides a newer one.
  status_at timestamptz,
  dead_reason text,
  attempts integer NOT NULL DEFAULT 0,
  last_attempt_at timestamptz,
  last_status integer,
  last_error text,
  delivered_at timestamptz,
  dead_at timestamptz,
  -- The notification as accepted (its JSON message body), for a resend. NULL
  -- while only attempts of it were seen (a message published before history
  -- was on, or straight to a later tier).
  content text,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- Listing (GET /v1/notifications): newest first, by merchant or not, keyset on (created_at, id).
CREATE INDEX notify_notifications_merchant_idx ON notify_notifications (merchant, created_at DESC, id DESC);
CREATE INDEX notify_notifications_created_idx ON notify_notifications (created_at DESC, id DESC);
-- Recover and "what is dead" look for the few dead ones among many delivered.
CREATE INDEX notify_notifications_dead_idx ON notify_notifications (merchant, created_at DESC, id DESC) WHERE status = 'dead';

-- One ladder from tier 0: accepted by the ingress or a client, or started
-- again by a resend, a recover or a redrive.
CREATE TABLE notify_runs (
  notification_id text NOT NULL,
  created_at timestamptz NOT NULL,
  run text NOT NULL,
  started_at timestamptz NOT NULL,
  via text NOT NULL CHECK (via IN ('ingress', 'client', 'direct', 'resend', 'recover', 'redrive')),
  producer text,
  PRIMARY KEY (notification_id, created_at, run)
) PARTITION BY RANGE (created_at);

CREATE TABLE notify_attempts (
  notification_id text NOT NULL,
  created_at timestamptz NOT NULL,
  -- The ladder it belongs to ('' for one whose start was never recorded).
  run text NOT NULL,
  -- 0-based within its ladder.
  attempt integer NOT NULL,
  tier integer NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  duration_ms integer NOT NULL,
  http_status integer,
  outcome text NOT NULL CHECK (outcome IN ('success', 'retry', 'dead', 'skipped')),
  -- Why no request was made (origin isolation), for a skipped attempt.
  skip_reason text,
  error text,
  -- The first KiB of the merchant's answer.
  answer text,
  -- When the recorder committed it: finished_at to recorded_at is the history's lag.
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (notification_id, created_at, run, attempt)
) PARTITION BY RANGE (created_at);

-- Creates the three partitions of one UTC day if they are missing. Recorders of
-- several daemons may ask at once: the advisory lock makes it one at a time.
CREATE FUNCTION notify_history_add_day(day date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
  hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
  suffix text := to_char(day, 'YYYYMMDD');
  parent text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('notify_history_partitions'));
  FOREACH parent IN ARRAY ARRAY['notify_notifications', 'notify_runs', 'notify_attempts'] LOOP
    IF to_regclass(parent || '_' || suffix) IS NULL THEN
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', parent || '_' || suffix, parent, lo, hi);
    END IF;
  END LOOP;
END;
$$;

-- Drops every day partition that ends at or before `cutoff` (retention), and
-- returns the days dropped.
CREATE FUNCTION notify_history_drop_before(cutoff timestamptz) RETURNS SETOF date
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
    FOREACH parent IN ARRAY ARRAY['notify_notifications', 'notify_runs', 'notify_attempts'] LOOP
      EXECUTE format('DROP TABLE IF EXISTS %I', parent || '_' || to_char(d, 'YYYYMMDD'));
    END LOOP;
    RETURN NEXT d;
  END LOOP;
END;
$$;
