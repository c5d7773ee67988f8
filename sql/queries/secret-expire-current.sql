-- Rotation: every secret that still signs goes on signing for at most the
-- grace period ($2 seconds) from now: the current one (so far without an
-- end), and one left in its grace by an earlier rotation whose end is later.
-- So a rotation with grace 0 (a secret leaked) ends every older secret at
-- once, not only the newest, and a switch back to standard keeps none.
UPDATE notify_merchant_secrets
   SET expires_at = now() + make_interval(secs => $2)
 WHERE merchant_id = $1 AND (expires_at IS NULL OR expires_at > now() + make_interval(secs => $2))
