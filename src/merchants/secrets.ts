/**
 * Merchant signing secrets: made by notifyd, shown once, stored sealed with
 * AES-256-GCM when a key is configured, and afterwards known only by a
 * fingerprint.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** What operators see instead of a secret: a short hash that tells secrets apart and reveals nothing. */
export function fingerprint(secret: string): string {
  return `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * The bytes to store. With a key: IV, tag and ciphertext, the merchant id as
 * associated data (a sealed secret copied to another merchant's row does not
 * open). Without: the secret's bytes.
 */
export function sealSecret(secret: string, key: Buffer | null, merchantId: string): { bytes: Buffer; encrypted: boolean } {
  if (key === null) return { bytes: Buffer.from(secret, 'utf8'), encrypted: false };
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(merchantId, 'utf8'));
  const ct = Buffer.concat([c.update(secret, 'utf8'), c.final()]);
  return { bytes: Buffer.concat([iv, c.getAuthTag(), ct]), encrypted: true };
}

/** The secret back from stored bytes; throws when the key is missing or wrong (never quoting the bytes). */
export function openSecret(bytes: Buffer, encrypted: boolean, key: Buffer | null, merchantId: string): string {
  if (!encrypted) return bytes.toString('utf8');
  if (key === null) throw new Error(`merchant ${merchantId}: its secrets are encrypted and NOTIFY_SECRETS_KEY is not set`);
  try {
    const d = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES));
    d.setAAD(Buffer.from(merchantId, 'utf8'));
    d.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([d.update(bytes.subarray(IV_BYTES + TAG_BYTES)), d.final()]).toString('utf8');
  } catch {
    throw new Error(`merchant ${merchantId}: a secret does not open with NOTIFY_SECRETS_KEY (another key?)`);
  }
}
