/**
 * Merchant-side verification of notifyd's Standard Webhooks signatures.
 * Deliberately standalone (only `node:crypto` and the error table), so a
 * merchant importing it pulls in none of the daemon.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { ErrorCodes, NotifyError } from './core/errors.js';
import { decodeWebhookSecret } from './core/keys.js';

/** Options of {@link verifyWebhook}. */
export interface VerifyWebhookOptions {
  /** One `whsec_<base64>` secret, or several while rotating (any may match). */
  secrets: string | readonly string[];
  /** The request headers, any case; Node's `req.headers` fits as is. */
  headers: Record<string, string | string[] | undefined>;
  /** The raw request body, exactly as received (before any JSON parsing). */
  body: string | Buffer;
  /** Largest accepted clock difference, seconds (default 300, as the Standard Webhooks spec). */
  toleranceSec?: number;
  /** The current time in seconds, for tests; defaults to the system clock. */
  nowSec?: number;
}

function invalid(reason: string): NotifyError {
  return new NotifyError(ErrorCodes.SIGNATURE_INVALID, `webhook signature: ${reason}`);
}

function header(headers: VerifyWebhookOptions['headers'], name: string): string | string[] | undefined {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}

function single(headers: VerifyWebhookOptions['headers'], name: string): string {
  const v = header(headers, name);
  const one = Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
  if (one === undefined || one === '') throw invalid(Array.isArray(v) && v.length > 1 ? `repeated ${name} header` : `missing ${name} header`);
  return one;
}

function decodeSecret(secret: string, index: number): Buffer {
  const key = decodeWebhookSecret(secret);
  // A misconfigured secret is the receiver's bug, not a forged request: say so distinctly.
  if (key === null) throw new NotifyError(ErrorCodes.CONFIG_INVALID, `webhook secret #${index + 1} is not whsec_<base64>`);
  return key;
}

/**
 * Verifies a webhook signed by notifyd's `standard` scheme (the Standard Webhooks
 * spec: `webhook-id`, `webhook-timestamp`, `webhook-signature` headers, each
 * signature `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
 *
 * Pass the raw body: re-serialised JSON differs in bytes and will not verify.
 * Accepts the request when the timestamp is within `toleranceSec` of now and any
 * `v1` signature matches any of `secrets`, so both sides can rotate secrets
 * without a gap. Comparison is constant-time.
 *
 * @example
 * ```ts
 * const { id } = verifyWebhook({ secrets: process.env.WEBHOOK_SECRET!, headers: req.headers, body: rawBody });
 * // id is stable across retries: use it to deduplicate.
 * ```
 * @returns the notification `id` and the signed `timestampSec`.
 * @throws NotifyError `SIGNATURE_INVALID` (with the reason) when the request must be rejected;
 *   `CONFIG_INVALID` when no secret is given or one is not `whsec_<base64>`.
 */
export function verifyWebhook(opts: VerifyWebhookOptions): { id: string; timestampSec: number } {
  const secrets = typeof opts.secrets === 'string' ? [opts.secrets] : opts.secrets;
  if (secrets.length === 0) throw new NotifyError(ErrorCodes.CONFIG_INVALID, 'verifyWebhook: no secret given');
  const keys = secrets.map(decodeSecret);
  const toleranceSec = opts.toleranceSec ?? 300;
  // NaN would make both window checks false and accept any timestamp.
  if (!(toleranceSec >= 0)) throw new NotifyError(ErrorCodes.CONFIG_INVALID, 'verifyWebhook: toleranceSec must be >= 0');
  const nowSec = opts.nowSec ?? Math.floor(Date.now() / 1000);
  // As for the tolerance: a NaN clock would accept any timestamp.
  if (!Number.isFinite(nowSec)) throw new NotifyError(ErrorCodes.CONFIG_INVALID, 'verifyWebhook: nowSec must be a finite number');

  const id = single(opts.headers, 'webhook-id');
  const tsText = single(opts.headers, 'webhook-timestamp');
  if (!/^\d{1,15}$/.test(tsText)) throw invalid('webhook-timestamp is not a number of seconds');
  const timestampSec = Number(tsText);
  // Bounds a replay of a captured request to the tolerance window.
  if (nowSec - timestampSec > toleranceSec) throw invalid('timestamp too old');
  if (timestampSec - nowSec > toleranceSec) throw invalid('timestamp too new');

  const sigHeader = header(opts.headers, 'webhook-signature');
  const sigText = Array.isArray(sigHeader) ? sigHeader.join(' ') : sigHeader;
  if (!sigText) throw invalid('missing webhook-signature header');
  const candidates = sigText
    .split(' ')
    .filter((s) => s.startsWith('v1,'))
    .map((s) => Buffer.from(s.slice(3), 'utf8'));
  if (candidates.length === 0) throw invalid('no v1 signature');

  const body = typeof opts.body === 'string' ? Buffer.from(opts.body, 'utf8') : opts.body;
  let matched = false;
  for (const key of keys) {
    const expected = Buffer.from(
      createHmac('sha256', key).update(`${id}.${tsText}.`, 'utf8').update(body).digest('base64'),
      'utf8',
    );
    // No early exit: the time taken must not tell which secret or entry matched.
    for (const c of candidates) if (c.length === expected.length && timingSafeEqual(c, expected)) matched = true;
  }
  if (!matched) throw invalid('no matching signature');
  return { id, timestampSec };
}
