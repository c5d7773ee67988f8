-- Tells every process of every daemon (LISTEN notify_merchants) that a merchant changed.
SELECT pg_notify('notify_merchants', $1)
