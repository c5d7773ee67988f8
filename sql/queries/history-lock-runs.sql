-- First in a redrive's transaction: the history's tables are locked in the
-- order every other writer takes them (the recorder's batch, and the
-- retention job's partition changes: runs, attempts, notifications), before
-- history-lock-parked.sql locks notification rows. Without it, a retention run
-- between that statement and history-superseded.sql (which reads notify_runs)
-- deadlocked with the redrive. The parent alone (ONLY): partitions are what
-- the job replaces, and the parent's lock is what orders the two.
LOCK TABLE ONLY notify_runs IN ACCESS SHARE MODE
