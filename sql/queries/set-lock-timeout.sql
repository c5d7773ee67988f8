-- How long the statements of the current transaction may wait for a lock ($1, e.g. '30s'), then fail.
SELECT set_config('lock_timeout', $1, true)
