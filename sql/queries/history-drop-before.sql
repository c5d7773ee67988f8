-- Drops the history partitions of every day that ended at or before the cutoff; returns those days.
SELECT day::text FROM notify_history_drop_before($1::timestamptz) AS day
