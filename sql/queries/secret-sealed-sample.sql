-- One secret already sealed, to check that a key opens what is sealed before sealing more with it.
SELECT merchant_id, secret FROM notify_merchant_secrets WHERE encrypted LIMIT 1
