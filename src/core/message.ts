import { randomBytes } from 'node:crypto';
import type { LimitsConfig, SuccessCriteria } from './config.js';
import { ErrorCodes, NotifyError } from './errors.js';

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

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]*$/;
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[^"\r\n]*"|[A-Za-z0-9!#$&^_.+-]+))*$/;
// eslint-disable-next-line no-control-regex
const CTL_RE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/**
 * What an HTTP header value may hold: tab, visible ASCII, space and the
 * Latin-1 range. undici refuses anything else (a character above U+00FF,
 * say) when the request is made, so it is refused here instead.
 */
const HEADER_VALUE_RE = /^[\t\u0020-\u007e\u0080-\u00ff]*$/;
/** Headers notifyd sets itself or that would let a caller smuggle a second request. */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer',
  'expect', 'proxy-authorization', 'proxy-connection', 'content-type', 'user-agent',
  'webhook-id', 'webhook-timestamp', 'webhook-signature',
]);
const METADATA_MAX_BYTES = 16 * 1024;
/** The largest Date (year 275760): anything above cannot be an epoch and breaks AMQP's timestamp encoding. */
const MAX_EPOCH_MS = 8.64e15;
/** How far ahead of the receiving clock a createdAt may be (clock skew, not scheduling). */
const CREATED_AT_MAX_AHEAD_MS = 24 * 3600_000;

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

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks the success criteria of one notification. */
export function validateSuccess(v: unknown, field = 'success'): SuccessCriteria {
  if (!isPlainObject(v)) bad(field, 'must be an object');
  for (const k of Object.keys(v)) if (k !== 'status' && k !== 'bodyEquals') bad(`${field}.${k}`, 'unknown field');
  let status: SuccessCriteria['status'] = '2xx';
  if (v.status !== undefined && v.status !== '2xx') {
    if (!Array.isArray(v.status) || v.status.length === 0 || v.status.length > 50 ||
        !v.status.every((s) => Number.isInteger(s) && s >= 100 && s <= 599)) {
      bad(`${field}.status`, 'must be "2xx" or a list of HTTP statuses');
    }
    status = v.status as number[];
  }
  if (v.bodyEquals !== undefined) {
    if (typeof v.bodyEquals !== 'string' || v.bodyEquals.length > 1024) bad(`${field}.bodyEquals`, 'must be a string of at most 1024 characters');
    return { status, bodyEquals: v.bodyEquals };
  }
  return { status };
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
  if (CTL_RE.test(v) || /\s/.test(v)) bad(field, 'must not contain whitespace or control characters');
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

const KNOWN_FIELDS = new Set(['id', 'merchant', 'url', 'method', 'headers', 'body', 'contentType', 'success', 'metadata', 'createdAt']);

/** Checks the notification's headers; returns them with lower-cased names. */
function validateHeaders(v: unknown, limits: LimitsConfig): Record<string, string> {
  const headers: Record<string, string> = {};
  if (v === undefined) return headers;
  if (!isPlainObject(v)) bad('headers', 'must be an object of name: value strings');
  let count = 0;
  for (const name in v) {
    if (++count > limits.maxHeaders) bad('headers', `more than ${limits.maxHeaders} headers`);
    const value = v[name];
    const f = `headers.${name.slice(0, 64)}`;
    if (!TOKEN_RE.test(name)) bad(f, 'is not a valid header name');
    if (typeof value !== 'string') bad(f, 'value must be a string');
    if (CTL_RE.test(value)) bad(f, 'value must not contain CR, LF or control characters');
    if (!HEADER_VALUE_RE.test(value)) bad(f, 'value may hold only Latin-1 characters (encode others, e.g. percent-encoding)');
    // A Latin-1 character is at most 2 bytes of UTF-8: count bytes only when that could matter.
    if ((name.length + value.length) * 2 > limits.headerMaxBytes && Buffer.byteLength(name) + Buffer.byteLength(value) > limits.headerMaxBytes) {
      bad(f, `is over ${limits.headerMaxBytes} bytes`);
    }
    // Compared case-insensitively: HTTP header names are, so `Host` is `host`.
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower.startsWith('proxy-')) bad(f, 'is set by notifyd and cannot be overridden');
    if (headers[lower] !== undefined) bad(f, 'is given twice (header names are case-insensitive)');
    headers[lower] = value;
  }
  return headers;
}

/** Content types seen before, known valid: the media-type grammar is a costly regex to run per attempt. */
const VALID_CONTENT_TYPES = new Set<string>([JSON_TYPE, FORM_TYPE]);

function validateContentType(v: unknown): string {
  if (v === undefined) return JSON_TYPE;
  if (typeof v === 'string' && VALID_CONTENT_TYPES.has(v)) return v;
  if (typeof v !== 'string' || v.length > 200 || !MEDIA_TYPE_RE.test(v)) bad('contentType', 'must be a media type such as application/json');
  if (VALID_CONTENT_TYPES.size < 256) VALID_CONTENT_TYPES.add(v);
  return v;
}

/**
 * Validates a notification into a `Notification`: the one set of rules for
 * every path (ingress, `NotifyClient`, and a message read back from a work
 * queue, whoever published it). Throws `VALIDATION` naming the field.
 */
export function validateNotification(input: unknown, limits: LimitsConfig, opts: ValidateOptions = {}): Notification {
  if (!isPlainObject(input)) bad('notification', 'must be a JSON object');
  for (const k in input) if (!KNOWN_FIELDS.has(k)) bad(k, 'unknown field');

  let id: string;
  if (input.id === undefined || input.id === null) {
    if (opts.requireId) bad('id', 'is required');
    id = uuidv7(opts.now);
  } else {
    if (typeof input.id !== 'string' || input.id.length === 0) bad('id', 'must be a non-empty string');
    if (input.id.length > limits.idMaxLength) bad('id', `is longer than ${limits.idMaxLength} characters`);
    if (!ID_RE.test(input.id)) bad('id', 'may hold only letters, digits and . _ : @ - (starting with a letter or digit)');
    id = input.id;
  }

  let merchant: string | undefined;
  if (input.merchant !== undefined && input.merchant !== null) {
    if (typeof input.merchant !== 'string' || !ID_RE.test(input.merchant) || input.merchant.length > 128) {
      bad('merchant', 'must be a merchant id: letters, digits and . _ : @ - (up to 128, starting with a letter or digit)');
    }
    merchant = input.merchant;
  }

  const url = validateUrl(input.url, limits);

  let method: 'POST' | 'PUT' = 'POST';
  if (input.method !== undefined) {
    const m = typeof input.method === 'string' ? input.method.toUpperCase() : '';
    if (m !== 'POST' && m !== 'PUT') bad('method', 'must be POST or PUT');
    method = m;
  }

  const headers = validateHeaders(input.headers, limits);
  const contentType = validateContentType(input.contentType);
  const mediaType = mediaTypeOf(contentType);
  const bounded = (max: number): boolean => opts.sourceBytes !== undefined && opts.sourceBytes <= max;

  const body = input.body;
  if (typeof body === 'string') {
    if (!bounded(limits.bodyMaxBytes) && Buffer.byteLength(body) > limits.bodyMaxBytes) bad('body', `is over ${limits.bodyMaxBytes} bytes`);
  } else if (isPlainObject(body)) {
    if (mediaType === FORM_TYPE) {
      for (const k in body) {
        const t = typeof body[k];
        if (t !== 'string' && t !== 'number' && t !== 'boolean') bad(`body.${k.slice(0, 64)}`, 'form fields must be strings, numbers or booleans');
      }
    } else if (mediaType !== JSON_TYPE && !mediaType.endsWith('+json')) {
      bad('body', `an object body needs contentType ${JSON_TYPE} or ${FORM_TYPE}`);
    }
    if (!bounded(limits.bodyMaxBytes) && jsonBytes(body, 'body') > limits.bodyMaxBytes) bad('body', `is over ${limits.bodyMaxBytes} bytes`);
  } else {
    bad('body', 'is required and must be a string or an object');
  }

  const out: {
    -readonly [K in keyof Notification]: Notification[K];
  } = { id, url, method, headers, body: body as Notification['body'], contentType, createdAt: 0 };
  if (merchant !== undefined) out.merchant = merchant;
  if (input.success !== undefined && input.success !== null) out.success = validateSuccess(input.success);
  if (input.metadata !== undefined && input.metadata !== null) {
    if (!isPlainObject(input.metadata)) bad('metadata', 'must be an object');
    if (!bounded(METADATA_MAX_BYTES) && jsonBytes(input.metadata, 'metadata') > METADATA_MAX_BYTES) bad('metadata', `is over ${METADATA_MAX_BYTES} bytes`);
    out.metadata = input.metadata;
  }
  if (input.createdAt !== undefined) {
    if (typeof input.createdAt !== 'number' || !Number.isFinite(input.createdAt) || input.createdAt < 0 || input.createdAt > MAX_EPOCH_MS) {
      bad('createdAt', 'must be a ms epoch number');
    }
    // History keeps a notification by its createdAt's day (DESIGN §11): one far in the future would be kept for ever.
    if (input.createdAt > (opts.now ?? Date.now()) + CREATED_AT_MAX_AHEAD_MS) bad('createdAt', 'is more than a day in the future');
    out.createdAt = input.createdAt;
  } else {
    out.createdAt = opts.now ?? Date.now();
  }
  return out;
}

/** The HTTP body and content type for a notification. */
export function renderBody(n: Notification): { body: string; contentType: string } {
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
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, `body is not JSON: ${(err as Error).message}`, 'body');
  }
  try {
    return validateNotification(parsed, limits, { now, requireId: true, sourceBytes: content.length });
  } catch (err) {
    const e = err as NotifyError;
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, e.message, e.field, { cause: err });
  }
}

/** Reads a numeric AMQP header (amqplib may hand numbers back as numbers or strings). */
export function numberHeader(headers: Record<string, unknown> | undefined, name: string): number | undefined {
  const v = headers?.[name];
  // Number('') and Number('  ') are 0: a blank header is absent, not "epoch 0".
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : typeof v === 'bigint' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}
