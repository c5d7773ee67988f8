-- Merchants (DESIGN §10): who notifications are for, how they are signed,
-- where they may go and how hard they may be pushed.
CREATE TABLE notify_merchants (
  id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$'),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  enabled boolean NOT NULL DEFAULT true,
  signing_scheme text NOT NULL CHECK (signing_scheme IN ('standard', 'rsa2', 'none')),
  -- Origins (scheme://host[:port]) its notifications may be sent to.
  allowed_origins text[] NOT NULL DEFAULT '{}',
  max_concurrency integer CHECK (max_concurrency > 0),
  max_attempts integer CHECK (max_attempts > 0),
  success jsonb,
  disabled_reason text,
  -- Set by the tier workers when its attempts start failing, cleared on a success;
  -- a merchant failing longer than merchants.autoDisableAfter is disabled.
  failing_since timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Signing secrets of `standard` merchants. The current one has no expiry; a
-- rotated-out one keeps signing until expires_at (the grace period).
CREATE TABLE notify_merchant_secrets (
  merchant_id text NOT NULL REFERENCES notify_merchants (id) ON DELETE CASCADE,
  seq integer NOT NULL,
  -- AES-256-GCM (12-byte IV, 16-byte tag, ciphertext; the merchant id as
  -- associated data) when `encrypted`, else the secret's UTF-8 bytes.
  secret bytea NOT NULL,
  encrypted boolean NOT NULL,
  fingerprint text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  PRIMARY KEY (merchant_id, seq)
);
