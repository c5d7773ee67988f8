-- How many secrets are stored in plaintext (made before NOTIFY_SECRETS_KEY was set).
SELECT count(*)::int AS n FROM notify_merchant_secrets WHERE NOT encrypted
