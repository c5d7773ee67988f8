DELETE FROM notify_merchant_secrets WHERE expires_at IS NOT NULL AND expires_at <= now() RETURNING merchant_id
