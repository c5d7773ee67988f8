/**
 * Piscina task file for the `rsa2` scheme: RSA-SHA256 (PKCS#1 v1.5) signatures,
 * as Alipay's `RSA2`. Runs inside a worker thread, so a 2048-bit signature
 * (about a millisecond of CPU) never stalls the delivery event loop.
 *
 * Kept free of project imports: errors crossing the thread boundary arrive as
 * plain `Error`s (structured clone drops `code`), and `signing.ts` wraps them.
 */
import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** One signing job: which key, and the exact string to sign (UTF-8). */
export interface RsaSignTask {
  keyFile: string;
  content: string;
}

// Parsing a PEM costs far more than signing with it, so each thread does it once
// per path. A rotated key file therefore takes effect on restart, like config.
const keys = new Map<string, KeyObject>();

/** Reads and parses an RSA private key (PKCS#1 or PKCS#8 PEM). Messages never quote the key. */
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

/** Piscina entry point: the base64 RSA-SHA256 signature of `task.content`. */
export default function signRsa(task: RsaSignTask): string {
  let key = keys.get(task.keyFile);
  if (key === undefined) {
    key = loadRsaPrivateKey(task.keyFile);
    keys.set(task.keyFile, key);
  }
  return sign('sha256', Buffer.from(task.content, 'utf8'), key).toString('base64');
}
