/**
 * Signing key material, read and checked without any project imports: the
 * config parser checks keys with it, the signer and the merchant-side
 * verifier decode with it, and the RSA worker thread loads with it.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

const WEBHOOK_PREFIX = 'whsec_';
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in
 * the Standard Webhooks libraries), or null when it is not one. Buffer's
 * decoder skips invalid characters, so a typo would otherwise silently yield
 * a different key.
 */
export function decodeWebhookSecret(secret: string): Buffer | null {
  const b64 = secret.startsWith(WEBHOOK_PREFIX) ? secret.slice(WEBHOOK_PREFIX.length) : secret;
  const key = BASE64.test(b64) ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
  return key.length === 0 ? null : key;
}

/**
 * Reads and parses an RSA private key (PKCS#1 or PKCS#8 PEM). Throws plain
 * `Error`s whose messages never quote the key.
 */
export function loadRsaPrivateKey(keyFile: string): KeyObject {
  let pem: Buffer;
  try {
    pem = readFileSync(keyFile);
  } catch (err) {
    throw new Error(`rsa2: cannot read key file ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    // The OpenSSL message adds nothing useful and must not risk echoing key bytes.
    throw new Error(`rsa2: key file ${keyFile} is not a PEM private key (PKCS#1 or PKCS#8, unencrypted)`);
  } finally {
    pem.fill(0);
  }
  // An EC or RSA-PSS key would sign without error but no Alipay verifier would accept it.
  if (key.asymmetricKeyType !== 'rsa') {
    throw new Error(`rsa2: key file ${keyFile} holds a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, RSA required`);
  }
  return key;
}
