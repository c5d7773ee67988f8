/**
 * Piscina task file for the `rsa2` scheme: RSA-SHA256 (PKCS#1 v1.5) signatures,
 * as Alipay's `RSA2`. Runs inside a worker thread, so a 2048-bit signature
 * (about a millisecond of CPU) never stalls the delivery event loop.
 *
 * Errors crossing the thread boundary arrive as plain `Error`s (structured
 * clone drops `code`), and `signing.ts` wraps them.
 */
import { sign, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';

/** One signing job: the exact string to sign (UTF-8). */
export interface RsaSignTask {
  content: string;
}

/** What every thread of the pool starts with: the key, parsed once by the signer (a KeyObject crosses threads as a clone). */
export interface RsaSignWorkerData {
  key: KeyObject;
}

// The signer's key, not the file's: threads come and go (idle ones exit after
// 30 s), and one started after the key file was replaced would otherwise sign
// with the new key beside older threads signing with the old one. A replaced
// key file takes effect when the signers are made again (a tier worker's
// start, a config reload), for every thread at once.
let key: KeyObject | null = null;

/** Piscina entry point: the base64 RSA-SHA256 signature of `task.content`. */
export default function signRsa(task: RsaSignTask): string {
  key ??= (createRequire(import.meta.url)('piscina') as { workerData: RsaSignWorkerData }).workerData.key;
  return sign('sha256', Buffer.from(task.content, 'utf8'), key).toString('base64');
}
