-- A notification's status was the latest event's by time. A copy redelivered
-- after a lost ack (at-least-once) runs on down the ladder of the attempt
-- that was in fact delivered, and when it parks its `dead` came later than
-- the `delivered`: the history then said dead for a notification the
-- merchant had, and a redrive sent it again.
--
-- The status is now that of the latest ladder (by its start), and within a
-- ladder delivered beats dead beats its start: what an older ladder says
-- after a newer one started, or a ladder's duplicate copy says after it was
-- delivered, no longer replaces it. `status_run_at` is the start of the
-- ladder whose event set the status; NULL when that is not known (rows
-- written before this migration, a ladder nobody recorded the start of),
-- and then the event's own time stands in for it, which is the old order.
-- A nullable column without a default: no table rewrite.

ALTER TABLE notify_notifications ADD COLUMN status_run_at timestamptz;

-- Whether a status event (e_: status, time, ladder start) replaces the one a
-- row holds (n_): ordered by ladder start, then delivered > dead > pending, then
-- time. One definition for the recorder's upsert; src/history/fold.ts
-- (newerStatus) orders a batch the same way.
CREATE FUNCTION notify_status_newer(e_status text, e_at timestamptz, e_run_at timestamptz,
                                    n_status text, n_at timestamptz, n_run_at timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT e_at IS NOT NULL AND (
    n_at IS NULL
    OR (COALESCE(e_run_at, e_at), array_position(ARRAY['pending', 'dead', 'delivered'], e_status), e_at)
     > (COALESCE(n_run_at, n_at), array_position(ARRAY['pending', 'dead', 'delivered'], n_status), n_at))
$$;
