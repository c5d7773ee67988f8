-- Creates the history partitions of one UTC day (YYYY-MM-DD) if they are missing.
SELECT notify_history_add_day($1::date)
