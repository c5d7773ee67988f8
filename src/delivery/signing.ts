/**
 * Signs outgoing notifications (DESIGN.md §6): Standard Webhooks HMAC headers,
 * or Alipay-style `rsa2` form signatures computed in a worker-thread pool.
 */
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Piscina } from 'piscina';
import type { SigningConfig, SigningScheme } from '../core/config.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { decodeWebhookSecret, loadRsaPrivateKey } from '../core/keys.js';
import type { KeyObject } from 'node:crypto';
import type { RsaSignTask, RsaSignWorkerData } from './rsa-sign-worker.js';
import { FORM_TYPE, mediaTypeOf, renderBody, type Notification } from '../core/message.js';

/** Most one RSA signature may take in the pool (one takes about a millisecond): past it the attempt fails SIGNING_FAILED and is tried again. */
const RSA_SIGN_TIMEOUT_MS = 30_000;

export interface SignInput {
  id: string;
  timestampSec: number;
  body: string;
  contentType: string;
}

export interface SignOutput {
  headers: Record<string, string>;
  body: string;
}

export interface Signer {
  readonly scheme: SigningScheme;
  sign(input: SignInput): Promise<SignOutput>;
  close(): Promise<void>;
}

function signingFailed(message: string, cause?: unknown): NotifyError {
  return new NotifyError(ErrorCodes.SIGNING_FAILED, message, undefined, cause === undefined ? undefined : { cause });
}

/** `v1,<base64 HMAC-SHA256>` over `id.timestamp.body`, the Standard Webhooks signed content. */
function standardSignature(key: Buffer, id: string, timestampSec: number, body: Buffer): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSec}.`, 'utf8').update(body).digest('base64')}`;
}

function checkTimestamp(timestampSec: number): void {
  if (!Number.isSafeInteger(timestampSec) || timestampSec < 0) {
    throw signingFailed(`timestampSec must be a non-negative integer (got ${String(timestampSec)})`);
  }
}

/**
 * The Alipay notify signing rule, matched to what verifiers rebuild: fields
 * other than `sign`/`sign_type`, sorted by key, `k=v` on decoded values, `&`.
 *
 * Fields with an empty key or value are dropped from the delivered form, not
 * just from the signed string: Alipay's rule (and its Java/PHP SDKs) skips them,
 * but the Node SDK's `checkNotifySign` only filters empty *keys* and would put
 * `k=` into its string, so keeping them in the body would fail one or the other.
 */
/** The form field that carries the notification id under `rsa2`. */
export const NOTIFY_ID_FIELD = 'notify_id';

/** Why a notification can never be signed, and the field of it that says so. */
export interface Unsignable {
  readonly field: 'contentType' | 'body';
  readonly problem: string;
}

/**
 * The form fields `rsa2` signs, or why this body can never be signed (the
 * same answer on every try).
 */
function alipayFields(body: string, contentType: string): { fields: [string, string][] } | Unsignable {
  const [media, ...params] = contentType.split(';').map((s) => s.trim().toLowerCase());
  if (media !== FORM_TYPE) return { field: 'contentType', problem: `rsa2: body must be ${FORM_TYPE} (got ${media || 'no content type'})` };
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/"/g, '');
  // URLSearchParams decodes percent-escapes as UTF-8; any other charset would be signed wrongly.
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') return { field: 'contentType', problem: `rsa2: only UTF-8 forms can be signed (got charset=${charset})` };
  const fields: [string, string][] = [];
  const seen = new Set<string>();
  for (const [k, v] of new URLSearchParams(body)) {
    if (k === 'sign' || k === 'sign_type') continue;
    // Merchants' form parsers turn repeats into arrays (or keep one), so no verifier would agree.
    if (seen.has(k)) return { field: 'body', problem: `rsa2: form field "${k}" appears more than once` };
    seen.add(k);
    if (k === '' || v === '') continue;
    fields.push([k, v]);
  }
  return { fields };
}

function alipaySignContent(body: string, contentType: string, id: string): { fields: [string, string][]; content: string } {
  const form = alipayFields(body, contentType);
  if ('problem' in form) throw signingFailed(form.problem);
  const { fields } = form;
  // The id merchants deduplicate on, signed with the rest, as Alipay sends its
  // own `notify_id`; a producer that set one keeps it (an empty one, dropped
  // above like any empty field, is not one).
  if (!fields.some(([k]) => k === NOTIFY_ID_FIELD)) fields.push([NOTIFY_ID_FIELD, id]);
  // `<` compares UTF-16 code units, exactly as the Node SDK's `Object.keys().sort()` and
  // Java's `TreeMap<String>` (Alipay's own) do; for ASCII keys that is byte order.
  const content = [...fields]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  return { fields, content };
}

/**
 * The worker file next to this module: `.js` when running from `dist/`, `.ts`
 * when running sources under tsx. Our own extension is preferred, so a stray
 * build output never shadows the source being tested (or the reverse).
 */
function workerFile(): string {
  const own = fileURLToPath(import.meta.url);
  const exts = own.endsWith('.ts') ? ['.ts', '.js'] : ['.js', '.ts'];
  for (const ext of exts) {
    const candidate = fileURLToPath(new URL(`./rsa-sign-worker${ext}`, import.meta.url));
    if (existsSync(candidate)) return candidate;
  }
  throw signingFailed('rsa2: rsa-sign-worker.js not found next to signing.js');
}

/**
 * Worker threads inherit `process.execArgv`, so under `node --import tsx` or the
 * tsx CLI they can already load `.ts`. Only when tsx was registered in-process
 * (its API, not a flag) would a `.ts` worker fail to load; add the flag then,
 * alone: a thread given the process's arguments refuses V8 flags among them
 * (`ERR_WORKER_INVALID_EXEC_ARGV`), and a warmed tier worker has two
 * (src/supervisor/worker-flags.ts).
 */
function workerExecArgv(file: string): string[] | undefined {
  if (!file.endsWith('.ts') || process.execArgv.some((a) => a.includes('tsx'))) return undefined;
  try {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    return ['--import', pathToFileURL(tsx).href];
  } catch {
    return undefined;
  }
}

class NoneSigner implements Signer {
  readonly scheme = 'none' as const;
  private closed = false;

  async sign(input: SignInput): Promise<SignOutput> {
    if (this.closed) throw signingFailed('signer is closed');
    return { headers: {}, body: input.body };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

class StandardSigner implements Signer {
  readonly scheme = 'standard' as const;
  private readonly keys: readonly Buffer[];
  private closed = false;

  constructor(secrets: readonly string[]) {
    if (secrets.length === 0) throw signingFailed('standard: at least one whsec_ secret is required');
    this.keys = secrets.map((s, i) => {
      const key = decodeWebhookSecret(s);
      if (key === null) throw signingFailed(`standard: secret #${i + 1} is not whsec_<base64>`);
      return key;
    });
  }

  async sign(input: SignInput): Promise<SignOutput> {
    if (this.closed) throw signingFailed('signer is closed');
    checkTimestamp(input.timestampSec);
    const body = Buffer.from(input.body, 'utf8');
    return {
      headers: {
        'webhook-id': input.id,
        'webhook-timestamp': String(input.timestampSec),
        'webhook-signature': this.keys.map((k) => standardSignature(k, input.id, input.timestampSec, body)).join(' '),
      },
      body: input.body,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * piscina, loaded by the first RSA pool: only `rsa2` signs in threads, and
 * every other process (the ingress, tiers signing with HMAC or not at all)
 * would carry it for nothing.
 */
function loadPiscina(): typeof Piscina {
  return (createRequire(import.meta.url)('piscina') as { Piscina: typeof Piscina }).Piscina;
}

class RsaSigner implements Signer {
  readonly scheme = 'rsa2' as const;
  private pool: Piscina<RsaSignTask, string> | null = null;
  private closing: Promise<void> | null = null;
  /** Why a pool was dropped, to explain the rejections its destruction caused. */
  private readonly poolErrors = new WeakMap<Piscina<RsaSignTask, string>, string>();

  constructor(
    /** Parsed once, here: every thread of every pool signs with this key, whatever the file holds later. */
    private readonly key: KeyObject,
    private readonly threads: number,
  ) {}

  private getPool(): Piscina<RsaSignTask, string> {
    if (this.pool === null) {
      const filename = workerFile();
      const execArgv = workerExecArgv(filename);
      const pool = new (loadPiscina())<RsaSignTask, string>({
        filename,
        maxThreads: this.threads,
        minThreads: 0,
        // Threads (and their parsed key) are kept while notifications flow and
        // released after a quiet spell, so an idle tier holds no extra memory.
        idleTimeout: 30_000,
        workerData: { key: this.key } satisfies RsaSignWorkerData,
        ...(execArgv ? { execArgv } : {}),
      });
      // A thread failing outside a task (e.g. it cannot load the task file) is an
      // 'error' on the pool: unheard, it kills the process; heard, piscina leaves
      // queued tasks pending forever. So drop the pool, which rejects them, and
      // let the next sign() start a fresh one.
      pool.on('error', (err: unknown) => {
        this.poolErrors.set(pool, err instanceof Error ? err.message : String(err));
        if (this.pool === pool) this.pool = null;
        pool.destroy().catch(() => undefined);
      });
      this.pool = pool;
    }
    return this.pool;
  }

  async sign(input: SignInput): Promise<SignOutput> {
    if (this.closing !== null) throw signingFailed('signer is closed');
    const { fields, content } = alipaySignContent(input.body, input.contentType, input.id);
    const pool = this.getPool();
    let signature: string;
    try {
      // Bounded: a thread lost in the middle of a task can leave the tasks queued behind it (one thread) unsettled.
      signature = await pool.run({ content }, { signal: AbortSignal.timeout(RSA_SIGN_TIMEOUT_MS) });
    } catch (err) {
      let why = err instanceof Error ? err.message : String(err);
      if (this.closing !== null) why = `signer closed while signing (${why})`;
      else if (this.poolErrors.has(pool)) why = `signing thread failed (${this.poolErrors.get(pool)!})`;
      throw signingFailed(why.startsWith('rsa2:') ? why : `rsa2: ${why}`, err);
    }
    const out = new URLSearchParams(fields);
    out.append('sign_type', 'RSA2');
    out.append('sign', signature);
    return { headers: {}, body: out.toString() };
  }

  close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    this.closing ??= pool === null ? Promise.resolve() : pool.destroy();
    return this.closing;
  }
}

/**
 * Why `scheme` can never sign this body (its content type, a form's charset
 * or a repeated field), or null when it can. Such a notification fails the
 * same way on every try, so the ingress refuses it and a worker parks it
 * instead of retrying.
 */
export function unsignableReason(scheme: SigningScheme, n: Pick<Notification, 'body' | 'contentType'>): Unsignable | null {
  if (scheme !== 'rsa2') return null;
  if (mediaTypeOf(n.contentType) !== FORM_TYPE) return { field: 'contentType', problem: `rsa2 signs ${FORM_TYPE} bodies, not ${n.contentType}` };
  const form = alipayFields(renderBody(n).body, n.contentType);
  return 'problem' in form ? form : null;
}

/**
 * Builds the signer for the configured scheme. Secrets are decoded and, for
 * `rsa2`, the key file is checked once here so a bad key stops start-up rather
 * than failing every delivery; the worker pool itself starts on first use.
 *
 * @throws NotifyError `SIGNING_FAILED` for an unusable secret or key (never quoting it).
 */
export function createSigner(cfg: SigningConfig): Signer {
  switch (cfg.scheme) {
    case 'none':
      return new NoneSigner();
    case 'standard':
      return new StandardSigner(cfg.secrets);
    case 'rsa2': {
      if (!cfg.keyFile) throw signingFailed('rsa2: signing.keyFile is required');
      let key: KeyObject;
      try {
        key = loadRsaPrivateKey(cfg.keyFile);
      } catch (err) {
        throw signingFailed((err as Error).message);
      }
      return new RsaSigner(key, Math.max(1, cfg.threads));
    }
    default:
      throw signingFailed(`unknown signing scheme "${String(cfg.scheme)}"`);
  }
}
