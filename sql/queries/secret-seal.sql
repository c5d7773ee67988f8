-- One plaintext secret replaced by its sealed bytes ($3).
UPDATE notify_merchant_secrets
   SET secret = $3, encrypted = true
 WHERE merchant_id = $1 AND seq = $2 AND NOT encrypted
