INSERT INTO notify_merchant_secrets (merchant_id, seq, secret, encrypted, fingerprint)
VALUES ($1, COALESCE((SELECT max(seq) FROM notify_merchant_secrets WHERE merchant_id = $1), 0) + 1, $2, $3, $4)
