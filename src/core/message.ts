import { randomBytes } from 'node:crypto';
import type { LimitsConfig, SuccessCriteria } from './config.js';
import { ErrorCodes, NotifyError } from './errors.js';
import { checkNotificationShape, checkSuccessShape } from '../contract/notification-check.js';
import { METADATA_MAX_BYTES, URL_PATTERN } from '../contract/notification-schema.js';

export const JSON_TYPE = 'application/json';
export const FORM_TYPE = 'application/x-www-form-urlencoded';

/** A validated notification, as carried in the AMQP message body (DESIGN §4). */
export interface Notification {
  readonly id: string;
  /** The registered merchant it is for (DESIGN §10): its secrets sign it, its origins bound its URL. */
  readonly merchant?: string;
  readonly url: string;
  readonly method: 'POST' | 'PUT';
  readonly headers: Readonly<Record<string, string>>;
  /** Sent as is when a string; JSON- or form-encoded when an object. */
  readonly body: string | Readonly<Record<string, unknown>>;
  readonly contentType: string;
  readonly success?: SuccessCriteria;
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** ms epoch. */
  readonly createdAt: number;
}

/** AMQP headers kept across tiers (no `x-` prefix: those belong to the broker). */
export const H = Object.freeze({
  attempt: 'notify-attempt',
  firstAttemptAt: 'notify-first-attempt-at',
  dueAt: 'notify-due-at',
  lastError: 'notify-last-error',
  deadReason: 'notify-dead-reason',
  /** When notifyd parked it on `P.dead` (ms since epoch). */
  deadAt: 'notify-dead-at',
  /** The tier that parked it. */
  deadTier: 'notify-dead-tier',
  /** Attempts made (or skipped) in the ladder it was parked from: its tier's own counts only when it made one. */
  deadAttempts: 'notify-dead-attempts',
  redriven: 'notify-redriven',
  /** The producer (ingress token name) that submitted the notification. */
  producer: 'notify-producer',
  /** Times it was deferred to a hold queue (its origin was saturated); not attempts. */
  deferred: 'notify-deferred',
  /**
   * When it started waiting for its origin in the tier it is in (set when
   * it is first deferred, dropped when it moves on): its wait budget runs
   * from there, not from its due time.
   */
  waitingSince: 'notify-waiting-since',
  /** The ladder (from tier 0) this copy is on: set anew by the ingress, a client, a resend, a recover or a redrive. */
  run: 'notify-run',
  /** Present when whoever started the ladder recorded it in the history (with the notification). */
  recorded: 'notify-recorded',
  /** On a bundle only: how many hand-ons it carries (src/broker/bundle.ts). */
  bundle: 'notify-bundle',
});

export type DeadReason = 'exhausted' | 'invalid' | 'blocked' | 'disabled' | `status-${number}`;

/** UUID v7: time-ordered, so ids sort by creation (RFC 9562). */
export function uuidv7(now = Date.now()): string {
  const b = randomBytes(16);
  b.writeUIntBE(now, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Headers notifyd sets itself or that would let a caller smuggle a second request (in any case: header names are case-insensitive). */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer',
  'expect', 'proxy-authorization', 'proxy-connection', 'content-type', 'user-agent',
  'webhook-id', 'webhook-timestamp', 'webhook-signature',
]);
/** How far ahead of the receiving clock a createdAt may be (clock skew, not scheduling). */
/** How far ahead of this clock a notification's `createdAt` may be (a producer's clock ahead). */
export const CREATED_AT_MAX_AHEAD_MS = 24 * 3600_000;

/** Serialised size, refusing values JSON cannot serialise (too deeply nested) as input errors, not crashes. */
function jsonBytes(v: unknown, field: string): number {
  try {
    return Buffer.byteLength(JSON.stringify(v));
  } catch {
    bad(field, 'cannot be serialised (nested too deeply)');
  }
}

/** The media type of a Content-Type value, without parameters, lower-cased (`Text/Plain; charset=x` → `text/plain`). */
export function mediaTypeOf(contentType: string): string {
  // The two types nearly every notification carries, without allocating.
  if (contentType === JSON_TYPE || contentType === FORM_TYPE) return contentType;
  return contentType.split(';')[0]!.trim().toLowerCase();
}

function bad(field: string, message: string): never {
  throw new NotifyError(ErrorCodes.VALIDATION, `${field}: ${message}`, field);
}

/** Checks the success criteria of one notification (or merchant) against their schema. */
export function validateSuccess(v: unknown, field = 'success'): SuccessCriteria {
  checkSuccessShape(v, field);
  return successOf(v as SuccessCriteria);
}

/** Success criteria that passed their schema, with the default status filled in. */
function successOf(s: { readonly status?: SuccessCriteria['status']; readonly bodyEquals?: string }): SuccessCriteria {
  const status = s.status ?? '2xx';
  return s.bodyEquals === undefined ? { status } : { status, bodyEquals: s.bodyEquals };
}

/**
 * URLs checked before, with the limit they were checked against and their
 * normalised form: one merchant endpoint serves many notifications, and
 * parsing a URL per attempt shows in a tier worker's profile.
 */
const checkedUrls = new Map<string, { readonly max: number; readonly normalised: string }>();

/** Checks a destination URL; returns it normalised by the WHATWG parser. */
export function validateUrl(v: unknown, limits: LimitsConfig, field = 'url'): string {
  if (typeof v === 'string') {
    const hit = checkedUrls.get(v);
    if (hit !== undefined && hit.max === limits.urlMaxLength) return hit.normalised;
  }
  const normalised = parseUrl(v, limits, field);
  if (checkedUrls.size >= 4096) checkedUrls.clear();
  checkedUrls.set(v as string, { max: limits.urlMaxLength, normalised });
  return normalised;
}

function parseUrl(v: unknown, limits: LimitsConfig, field: string): string {
  if (typeof v !== 'string' || v.length === 0) bad(field, 'is required and must be a string');
  if (v.length > limits.urlMaxLength) bad(field, `is longer than ${limits.urlMaxLength} characters`);
  if (!URL_RE.test(v)) bad(field, 'must not contain whitespace or control characters');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    bad(field, 'is not a valid absolute URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(field, `scheme ${u.protocol} is not allowed (http or https only)`);
  if (u.username || u.password) bad(field, 'must not carry credentials');
  if (!u.hostname) bad(field, 'has no host');
  return u.toString();
}
const URL_RE = new RegExp(URL_PATTERN, 'u');

/** Options of {@link validateNotification}. */
export interface ValidateOptions {
  /** The time that fills a missing `createdAt` (and a generated id). */
  readonly now?: number;
  /** A missing id is an error instead of being generated (messages read back from a queue). */
  readonly requireId?: boolean;
  /**
   * Bytes of the JSON the notification was parsed from. Body and metadata
   * can be no larger, so their (costly) serialised size is only computed
   * when this exceeds their limits.
   */
  readonly sourceBytes?: number;
}

/** What the schema cannot say about headers: reserved names, names given twice in other cases, bytes. Returns them lower-cased. */
function checkHeaders(v: Readonly<Record<string, string>> | undefined, limits: LimitsConfig): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name in v) {
    const value = v[name]!;
    const f = `headers.${name.slice(0, 64)}`;
    // A Latin-1 character is at most 2 bytes of UTF-8: count bytes only when that could matter.
    if ((name.length + value.length) * 2 > limits.headerMaxBytes && Buffer.byteLength(name) + Buffer.byteLength(value) > limits.headerMaxBytes) {
      bad(f, `is over ${limits.headerMaxBytes} bytes`);
    }
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower.startsWith('proxy-')) bad(f, 'is set by notifyd and cannot be overridden');
    if (headers[lower] !== undefined) bad(f, 'is given twice (header names are case-insensitive)');
    headers[lower] = value;
  }
  return headers;
}

/** The notification as its schema ({@link checkNotificationShape}) lets it through. */
interface Shaped {
  id?: string | null;
  merchant?: string | null;
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body: string | Record<string, unknown>;
  contentType?: string;
  success?: SuccessCriteria | null;
  metadata?: Record<string, unknown> | null;
  createdAt?: number;
}

/**
 * Validates a notification into a `Notification`: the one set of rules for
 * every path (ingress, `NotifyClient`, and a message read back from a work
 * queue, whoever published it). Its schema (`contract/notification-schema.ts`)
 * comes first; then what a schema cannot say. Throws `VALIDATION` naming the field.
 */
export function validateNotification(input: unknown, limits: LimitsConfig, opts: ValidateOptions = {}): Notification {
  checkNotificationShape(input, limits);
  const v = input as Shaped;

  let id: string;
  if (v.id === undefined || v.id === null) {
    if (opts.requireId) bad('id', 'is required');
    id = uuidv7(opts.now);
  } else {
    id = v.id;
  }
  const url = validateUrl(v.url, limits);
  const method = v.method === undefined || v.method === 'POST' ? 'POST' : (v.method.toUpperCase() as 'POST' | 'PUT');
  const headers = checkHeaders(v.headers, limits);
  const contentType = v.contentType ?? JSON_TYPE;
  const mediaType = mediaTypeOf(contentType);
  const bounded = (max: number): boolean => opts.sourceBytes !== undefined && opts.sourceBytes <= max;

  const body = v.body;
  if (typeof body === 'string') {
    if (!bounded(limits.bodyMaxBytes) && Buffer.byteLength(body) > limits.bodyMaxBytes) bad('body', `is over ${limits.bodyMaxBytes} bytes`);
  } else {
    if (mediaType === FORM_TYPE) {
      for (const k in body) {
        const t = typeof body[k];
        if (t !== 'string' && t !== 'number' && t !== 'boolean') bad(`body.${k.slice(0, 64)}`, 'form fields must be strings, numbers or booleans');
      }
    } else if (mediaType !== JSON_TYPE && !mediaType.endsWith('+json')) {
      bad('body', `an object body needs contentType ${JSON_TYPE} or ${FORM_TYPE}`);
    }
    if (!bounded(limits.bodyMaxBytes) && jsonBytes(body, 'body') > limits.bodyMaxBytes) bad('body', `is over ${limits.bodyMaxBytes} bytes`);
  }

  const out: {
    -readonly [K in keyof Notification]: Notification[K];
  } = { id, url, method, headers, body, contentType, createdAt: 0 };
  if (v.merchant !== undefined && v.merchant !== null) out.merchant = v.merchant;
  if (v.success !== undefined && v.success !== null) out.success = successOf(v.success);
  if (v.metadata !== undefined && v.metadata !== null) {
    if (!bounded(METADATA_MAX_BYTES) && jsonBytes(v.metadata, 'metadata') > METADATA_MAX_BYTES) bad('metadata', `is over ${METADATA_MAX_BYTES} bytes`);
    out.metadata = v.metadata;
  }
  if (v.createdAt !== undefined) {
    // History keeps a notification by its createdAt's day (DESIGN §11): one far in the future would be kept for ever.
    if (v.createdAt > (opts.now ?? Date.now()) + CREATED_AT_MAX_AHEAD_MS) bad('createdAt', 'is more than a day in the future');
    out.createdAt = v.createdAt;
  } else {
    out.createdAt = opts.now ?? Date.now();
  }
  return out;
}

/** The HTTP body and content type for a notification. */
export function renderBody(n: Pick<Notification, 'body' | 'contentType'>): { body: string; contentType: string } {
  if (typeof n.body === 'string') return { body: n.body, contentType: n.contentType };
  const mediaType = mediaTypeOf(n.contentType);
  if (mediaType === FORM_TYPE) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(n.body)) params.append(k, String(v));
    return { body: params.toString(), contentType: n.contentType };
  }
  return { body: JSON.stringify(n.body), contentType: n.contentType };
}

/** Serialises a notification for the AMQP body. */
export function encodeNotification(n: Notification): Buffer {
  return Buffer.from(JSON.stringify(n));
}

/**
 * Reads a notification back from an AMQP body, with the same rules as the
 * ingress: whoever published it (the ingress, `NotifyClient`, another
 * program straight to the queue), nothing reaches a merchant that the
 * ingress would have refused. Anything else throws `MESSAGE_INVALID` naming
 * the field (the worker parks it as `invalid`).
 */
export function decodeNotification(content: Buffer, limits: LimitsConfig, now = Date.now()): Notification {
  return decodeQueued(content, limits, now).n;
}

/**
 * `decodeNotification`, and the body to hand on: the same bytes, or, for a
 * notification published without `createdAt` (straight to the queue), the
 * same JSON with the time it was given here. Every later tier, the parked
 * copy and the history then see one `createdAt`; filled afresh at each tier,
 * each would have keyed a history row of its own (DESIGN §11 keys a
 * notification by id and createdAt).
 */
export function decodeQueued(content: Buffer, limits: LimitsConfig, now = Date.now()): { n: Notification; content: Buffer } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, `body is not JSON: ${(err as Error).message}`, 'body');
  }
  let n: Notification;
  try {
    n = validateNotification(parsed, limits, { now, requireId: true, sourceBytes: content.length });
  } catch (err) {
    const e = err as NotifyError;
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, e.message, e.field, { cause: err });
  }
  // validateNotification took an object, so parsed is one.
  if ((parsed as { createdAt?: unknown }).createdAt !== undefined) return { n, content };
  return { n, content: Buffer.from(JSON.stringify({ ...(parsed as object), createdAt: n.createdAt })) };
}

/** Reads a numeric AMQP header (amqplib may hand numbers back as numbers or strings). */
export function numberHeader(headers: Record<string, unknown> | undefined, name: string): number | undefined {
  const v = headers?.[name];
  // Number('') and Number('  ') are 0: a blank header is absent, not "epoch 0".
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : typeof v === 'bigint' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}
