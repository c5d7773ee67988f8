import { randomBytes } from 'node:crypto';
import type { LimitsConfig, SuccessCriteria } from './config.js';
import { ErrorCodes, NotifyError } from './errors.js';

export const JSON_TYPE = 'application/json';
export const FORM_TYPE = 'application/x-www-form-urlencoded';

/** A validated notification, as carried in the AMQP message body (DESIGN §4). */
export interface Notification {
  readonly id: string;
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
});

export type DeadReason = 'exhausted' | 'invalid' | 'blocked' | `status-${number}`;

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
/** Headers notifyd sets itself or that would let a caller smuggle a second request. */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer',
  'expect', 'proxy-authorization', 'proxy-connection', 'content-type', 'user-agent',
  'webhook-id', 'webhook-timestamp', 'webhook-signature',
]);
const METADATA_MAX_BYTES = 16 * 1024;
/** The largest Date (year 275760): anything above cannot be an epoch and breaks AMQP's timestamp encoding. */
const MAX_EPOCH_MS = 8.64e15;

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

/** Checks a destination URL; returns it normalised by the WHATWG parser. */
export function validateUrl(v: unknown, limits: LimitsConfig, field = 'url'): string {
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

/**
 * Validates untrusted input (ingress, client, or a message read back from a
 * queue) into a `Notification`. Throws `VALIDATION` naming the field.
 */
export function validateNotification(
  input: unknown,
  limits: LimitsConfig,
  opts: { now?: number; requireId?: boolean } = {},
): Notification {
  if (!isPlainObject(input)) bad('notification', 'must be a JSON object');
  const known = new Set(['id', 'url', 'method', 'headers', 'body', 'contentType', 'success', 'metadata', 'createdAt']);
  for (const k of Object.keys(input)) if (!known.has(k)) bad(k, 'unknown field');

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

  const url = validateUrl(input.url, limits);

  let method: 'POST' | 'PUT' = 'POST';
  if (input.method !== undefined) {
    const m = typeof input.method === 'string' ? input.method.toUpperCase() : '';
    if (m !== 'POST' && m !== 'PUT') bad('method', 'must be POST or PUT');
    method = m;
  }

  const headers: Record<string, string> = {};
  if (input.headers !== undefined) {
    if (!isPlainObject(input.headers)) bad('headers', 'must be an object of name: value strings');
    const entries = Object.entries(input.headers);
    if (entries.length > limits.maxHeaders) bad('headers', `more than ${limits.maxHeaders} headers`);
    for (const [name, value] of entries) {
      const f = `headers.${name.slice(0, 64)}`;
      if (!TOKEN_RE.test(name)) bad(f, 'is not a valid header name');
      if (typeof value !== 'string') bad(f, 'value must be a string');
      if (CTL_RE.test(value)) bad(f, 'value must not contain CR, LF or control characters');
      if (Buffer.byteLength(name) + Buffer.byteLength(value) > limits.headerMaxBytes) bad(f, `is over ${limits.headerMaxBytes} bytes`);
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower) || lower.startsWith('proxy-')) bad(f, 'is set by notifyd and cannot be overridden');
      headers[lower] = value;
    }
  }

  let contentType = JSON_TYPE;
  if (input.contentType !== undefined) {
    if (typeof input.contentType !== 'string' || input.contentType.length > 200 || !MEDIA_TYPE_RE.test(input.contentType)) {
      bad('contentType', 'must be a media type such as application/json');
    }
    contentType = input.contentType;
  }
  const mediaType = mediaTypeOf(contentType);

  const body = input.body;
  let bodyBytes: number;
  if (typeof body === 'string') {
    bodyBytes = Buffer.byteLength(body);
  } else if (isPlainObject(body)) {
    if (mediaType === FORM_TYPE) {
      for (const [k, v] of Object.entries(body)) {
        if (!['string', 'number', 'boolean'].includes(typeof v)) bad(`body.${k.slice(0, 64)}`, 'form fields must be strings, numbers or booleans');
      }
    } else if (mediaType !== JSON_TYPE && !mediaType.endsWith('+json')) {
      bad('body', `an object body needs contentType ${JSON_TYPE} or ${FORM_TYPE}`);
    }
    bodyBytes = jsonBytes(body, 'body');
  } else {
    bad('body', 'is required and must be a string or an object');
  }
  if (bodyBytes > limits.bodyMaxBytes) bad('body', `is over ${limits.bodyMaxBytes} bytes`);

  const out: {
    -readonly [K in keyof Notification]: Notification[K];
  } = { id, url, method, headers, body: body as Notification['body'], contentType, createdAt: 0 };
  if (input.success !== undefined && input.success !== null) out.success = validateSuccess(input.success);
  if (input.metadata !== undefined && input.metadata !== null) {
    if (!isPlainObject(input.metadata)) bad('metadata', 'must be an object');
    if (jsonBytes(input.metadata, 'metadata') > METADATA_MAX_BYTES) bad('metadata', `is over ${METADATA_MAX_BYTES} bytes`);
    out.metadata = input.metadata;
  }
  if (input.createdAt !== undefined) {
    if (typeof input.createdAt !== 'number' || !Number.isFinite(input.createdAt) || input.createdAt < 0 || input.createdAt > MAX_EPOCH_MS) {
      bad('createdAt', 'must be a ms epoch number');
    }
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

const STORED_URL_RE = /^https?:\/\/[^\s\u0000-\u001f\u007f]+$/i;

/**
 * Pure shape check of a notification read back from a work queue. The full
 * input rules ran once at the ingress or client; repeating them in every tier
 * cost measurable CPU per attempt. What remains is what keeps the request
 * safe and the worker alive: types, an http(s) URL without whitespace, header
 * names that are tokens and values without CR/LF. (The URL is parsed by the
 * delivery step, which refuses what does not parse as `invalid`.)
 */
function checkStored(v: unknown): Notification {
  if (!isPlainObject(v)) bad('notification', 'must be a JSON object');
  if (typeof v.id !== 'string' || v.id.length === 0 || v.id.length > 1024) bad('id', 'must be a non-empty string');
  if (typeof v.url !== 'string' || v.url.length > 64 * 1024 || !STORED_URL_RE.test(v.url)) bad('url', 'must be an http(s) URL');
  if (v.method !== undefined && v.method !== 'POST' && v.method !== 'PUT') bad('method', 'must be POST or PUT');
  if (v.headers !== undefined) {
    if (!isPlainObject(v.headers)) bad('headers', 'must be an object');
    const headers = v.headers as Record<string, unknown>;
    for (const name in headers) {
      const value = headers[name];
      if (!TOKEN_RE.test(name) || typeof value !== 'string' || CTL_RE.test(value)) bad(`headers.${name.slice(0, 64)}`, 'is not a valid header');
    }
  }
  if (typeof v.body !== 'string' && !isPlainObject(v.body)) bad('body', 'must be a string or an object');
  if (v.contentType !== undefined && (typeof v.contentType !== 'string' || CTL_RE.test(v.contentType))) bad('contentType', 'must be a media type');
  if (v.metadata !== undefined && v.metadata !== null && !isPlainObject(v.metadata)) bad('metadata', 'must be an object');
  if (v.createdAt !== undefined && (typeof v.createdAt !== 'number' || !Number.isFinite(v.createdAt))) bad('createdAt', 'must be a ms epoch number');
  // `v` is a fresh object from JSON.parse that nothing else holds: fill the
  // defaults in place rather than copying it per attempt.
  const n = v as { -readonly [K in keyof Notification]?: Notification[K] };
  if (n.method === undefined) n.method = 'POST';
  if (n.headers === undefined) n.headers = {};
  if (n.contentType === undefined) n.contentType = JSON_TYPE;
  if (n.createdAt === undefined) n.createdAt = 0;
  if (v.success === undefined || v.success === null) delete n.success;
  else n.success = validateSuccess(v.success);
  return n as Notification;
}

/**
 * Reads a notification back from an AMQP body. Anything that is not a
 * well-formed notification throws `MESSAGE_INVALID` naming the field (the
 * worker parks it as `invalid`).
 */
export function decodeNotification(content: Buffer): Notification {
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw new NotifyError(ErrorCodes.MESSAGE_INVALID, `body is not JSON: ${(err as Error).message}`, 'body');
  }
  try {
    return checkStored(parsed);
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
