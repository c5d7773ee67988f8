/**
 * Piscina task file for the `rsa2` scheme: RSA-SHA256 (PKCS#1 v1.5) signatures,
 * as Alipay's `RSA2`. Runs inside a worker thread, so a 2048-bit signature
 * (about a millisecond of CPU) never stalls the delivery event loop.
 *
 * It imports only the dependency-free key loader: errors crossing the thread
 * boundary arrive as plain `Error`s (structured clone drops `code`), and
 * `signing.ts` wraps them.
 */
import { sign, type KeyObject } from 'node:crypto';
import { loadRsaPrivateKey } from '../core/keys.js';

/** One signing job: which key, and the exact string to sign (UTF-8). */
export interface RsaSignTask {
  keyFile: string;
  content: string;
}

// Parsing a PEM costs far more than signing with it, so each thread does it once
// per path. A rotated key file therefore takes effect on restart, like config.
const keys = new Map<string, KeyObject>();

/** Piscina entry point: the base64 RSA-SHA256 signature of `task.content`. */
export default function signRsa(task: RsaSignTask): string {
  let key = keys.get(task.keyFile);
  if (key === undefined) {
    key = loadRsaPrivateKey(task.keyFile);
    keys.set(task.keyFile, key);
  }
  return sign('sha256', Buffer.from(task.content, 'utf8'), key).toString('base64');
}
