/**
 * Pure: the parameters of the history API (DESIGN §11) read from a query
 * string or a JSON body, with one coded 400 (`VALIDATION` + `field`) per bad
 * value, and the opaque keyset cursor of a listing. Shapes, types and ranges
 * are the documented schemas' (contract/history-params.ts); what they cannot
 * say (times relative to now, dates that exist, since before until, what a
 * cursor holds) is checked here once they passed.
 */
import { ajv, errorMessage, errorPath, type Validator } from '../contract/ajv.js';
import { LIST_LIMIT_DEFAULT, ListQuerySchema, RecoverInputSchema, TIME_MAX, TIME_MIN, TIME_RANGE_ERROR } from '../contract/history-params.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { parseDuration } from '../core/schedule.js';
import type { HistoryStatus } from './fold.js';

export { LIST_LIMIT_DEFAULT };

/**
 * Where the previous page ended: the last row's `created_at` to the
 * microsecond (PostgreSQL keeps microseconds; a millisecond would skip or
 * repeat rows created within the same millisecond) and its id.
 */
export interface ListCursor {
  /** `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as PostgreSQL printed it. */
  readonly at: string;
  readonly id: string;
}

/** A listing's filters; times are ms epoch, `since` inclusive, `until` exclusive. */
export interface ListFilter {
  readonly merchant: string | null;
  readonly status: HistoryStatus | null;
  readonly since: number | null;
  readonly until: number | null;
  readonly limit: number;
  readonly cursor: ListCursor | null;
}

/** A bulk recover's window (`POST …/notifications:recover`). */
export interface RecoverRequest {
  readonly merchant: string;
  readonly since: number;
  readonly until: number;
}

const bad = (field: string, message: string): NotifyError => new NotifyError(ErrorCodes.VALIDATION, `${field}: ${message}`, field);
const listValidator = ajv.compile<{ merchant?: string; status?: HistoryStatus; since?: string; until?: string; limit?: number; cursor?: string }>(ListQuerySchema);
const recoverValidator = ajv.compile<{ merchant: string; since: number | string; until?: number | string }>(RecoverInputSchema);

/** Throws ajv's first error as `VALIDATION` on the top-level field it is about (`root` for the value as a whole). */
function check<T>(validate: Validator<T>, value: unknown, root: string): asserts value is T {
  if (validate(value)) return;
  const e = validate.errors![0]!;
  throw bad(errorPath(e)[0] ?? root, errorMessage(e));
}

const MICRO_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const ISO_LIKE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/;

/** A cursor's time: a real date in the range PostgreSQL and the API share (a tampered one is a 400, not a 500). */
function validTime(iso: string): boolean {
  const t = Date.parse(iso);
  return Number.isFinite(t) && t >= TIME_MIN && t <= TIME_MAX && roundTrips(iso);
}

/** The opaque text of a cursor (base64url of a small JSON array). */
export function encodeCursor(c: ListCursor): string {
  return Buffer.from(JSON.stringify([c.at, c.id]), 'utf8').toString('base64url');
}

/** Reads a cursor back; anything not made by `encodeCursor` is a 400 on `cursor`. */
export function decodeCursor(text: string): ListCursor {
  let v: unknown;
  try {
    if (!/^[A-Za-z0-9_-]{1,2000}$/.test(text)) throw new Error('not base64url');
    v = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad('cursor', 'is not a cursor this API returned');
  }
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || typeof v[1] !== 'string' || !MICRO_ISO.test(v[0]) || !validTime(v[0]) || v[1].includes('\u0000')) {
    throw bad('cursor', 'is not a cursor this API returned');
  }
  return { at: v[0], id: v[1] };
}

function inRange(t: number, field: string): number {
  if (!Number.isFinite(t) || t < TIME_MIN || t > TIME_MAX) throw bad(field, TIME_RANGE_ERROR);
  return t;
}

/**
 * Whether the calendar fields written in `s` are the ones they name: `Date`
 * rolls 2026-02-30 over to March 2 and 24:00 to the next day without a word.
 */
function roundTrips(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?/.exec(s);
  if (!m) return false;
  const [y, mo, d, h = 0, mi = 0, sec = 0] = m.slice(1).map((x) => (x === undefined ? undefined : Number(x))) as number[];
  const t = new Date(Date.UTC(y!, mo! - 1, d!, h, mi, sec));
  // Date.UTC maps years 0..99 to 1900..1999: set the year again to compare.
  t.setUTCFullYear(y!, mo! - 1, d!);
  return t.getUTCFullYear() === y && t.getUTCMonth() === mo! - 1 && t.getUTCDate() === d && t.getUTCHours() === h && t.getUTCMinutes() === mi && t.getUTCSeconds() === sec;
}

/**
 * A point in time: an ISO 8601 date or date-time (UTC unless it says
 * otherwise), or a duration back from `now` with its unit (`90s`, `30m`,
 * `1h`, `2d`). Digits alone are refused: as a duration they would be ms
 * back from now, as a time ms since the epoch (what a JSON number means in
 * a recover body), and a reader cannot tell which. Every time must fall
 * between 1970 and 9999, and a date must exist (2026-02-30 is refused, not
 * rolled over to March).
 */
export function parseInstant(text: string, now: number, field: string): number {
  // An offset's '+' sent unescaped in a query string (curl does) arrives as a space: 2026-01-31T12:00:00 01:00.
  const s = text.trim().replace(/^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?) (\d{2}:?\d{2})$/, '$1+$2');
  if (ISO_LIKE.test(s)) {
    if (!roundTrips(s)) throw bad(field, `"${s.slice(0, 40)}" is not a valid date`);
    // A date-time without an offset is UTC (as the history's days are), not the server's local time.
    const withZone = /(?:Z|[+-]\d{2}:?\d{2})$/.test(s) || !s.includes(':') ? s : `${s}Z`;
    const t = Date.parse(withZone.replace(' ', 'T'));
    if (!Number.isFinite(t)) throw bad(field, `"${s.slice(0, 40)}" is not a valid date`);
    return inRange(t, field);
  }
  if (/^\d+(?:\.\d+)?$/.test(s)) {
    throw bad(field, 'digits alone are ambiguous: give a duration with its unit (90s, 30m, 1h, 2d), an ISO 8601 time, or (in a JSON body) ms since the epoch as a number');
  }
  let back: number;
  try {
    back = parseDuration(s, field);
  } catch {
    throw bad(field, 'must be an ISO 8601 time (2026-01-31T12:00:00Z) or a duration back from now (30m, 1h, 2d)');
  }
  return inRange(now - back, field);
}

/** The window's order, which a schema cannot compare. */
function ordered<W extends { since: number | null; until: number | null }>(w: W): W {
  if (w.since !== null && w.until !== null && w.since >= w.until) throw bad('until', 'must be after since');
  return w;
}

/** The filters of `GET …/notifications?merchant=&status=&since=&until=&limit=&cursor=`. */
export function parseListQuery(q: URLSearchParams, now: number): ListFilter {
  for (const k of Object.keys(ListQuerySchema.properties as object)) if (q.getAll(k).length > 1) throw bad(k, 'given more than once');
  const p: Record<string, unknown> = Object.fromEntries(q);
  // A query string holds text: digits become the integer the schema bounds, anything else stays text and fails its type.
  if (/^\d{1,6}$/.test(q.get('limit') ?? '')) p.limit = Number(p.limit);
  check(listValidator, p, 'query');
  const { merchant = null, status = null, since, until, limit = LIST_LIMIT_DEFAULT, cursor } = p;
  return ordered({
    merchant,
    status,
    since: since === undefined ? null : parseInstant(since, now, 'since'),
    until: until === undefined ? null : parseInstant(until, now, 'until'),
    limit,
    cursor: cursor ? decodeCursor(cursor) : null,
  });
}

/** The body of a recover: `{merchant, since, until?}` (`until` defaults to now). */
export function parseRecoverBody(body: unknown, now: number): RecoverRequest {
  check(recoverValidator, body, 'body');
  // A number passed the schema's range; only text needs reading.
  const at = (v: number | string, k: string): number => (typeof v === 'number' ? v : parseInstant(v, now, k));
  return ordered({ merchant: body.merchant, since: at(body.since, 'since'), until: body.until === undefined ? now : at(body.until, 'until') });
}

/**
 * Whether a `force` query parameter says yes: `1`, `true`, `yes`; no for
 * absent, empty, `0`, `false`, `no`. Anything else is a 400: a typo (`force=on`,
 * `tru`) silently meaning "not forced" would leave an operator thinking it was.
 */
export function forceParam(q: URLSearchParams): boolean {
  const v = q.get('force') ?? '';
  if (/^(1|true|yes)$/i.test(v)) return true;
  if (/^(|0|false|no)$/i.test(v)) return false;
  throw new NotifyError(ErrorCodes.VALIDATION, 'force: 1, true or yes (or 0, false, no)', 'force');
}
