-- Secrets stored in plaintext (created before NOTIFY_SECRETS_KEY was set),
-- locked until the sealing transaction ends: two masters starting together
-- seal each once.
SELECT merchant_id, seq, secret
  FROM notify_merchant_secrets
 WHERE NOT encrypted
 ORDER BY merchant_id, seq
   FOR UPDATE
