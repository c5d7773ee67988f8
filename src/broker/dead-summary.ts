import { redactUrl } from '../core/config-model.js';
import { H } from '../core/message.js';

/** One parked notification as the admin API shows it (`GET /admin/dead`). */
export interface ParkedSummary {
  readonly id: string;
  /** `notify-dead-reason`; `broker-<reason>` for what the broker dead-lettered itself (e.g. a delivery limit); else `unknown`. */
  readonly reason: string;
  /** The tier whose attempt parked it. */
  readonly tier: number | null;
  /**
   * Attempts made or skipped in its last pass down the ladder, as its `dead`
   * outcome event said (the tier when it was parked before its tier's
   * attempt: invalid, disabled, a merchant's cap); a redrive starts a new pass.
   */
  readonly attempts: number | null;
  readonly lastError: string | null;
  /** When it was parked (ms epoch). */
  readonly deadAt: number | null;
  /** The destination, password hidden; null when the body cannot be read. */
  readonly url: string | null;
  readonly merchant: string | null;
  /** How many times it was redriven before. */
  readonly redriven: number;
}

/** Shape of `GET /admin/dead`. */
export interface DeadListing {
  /** Messages in `P.dead` when the listing ended. */
  readonly total: number;
  /** Counts by reason over the listed messages. */
  readonly byReason: Readonly<Record<string, number>>;
  /** Counts by merchant over the listed messages (`-` for a notification without one). */
  readonly byMerchant: Readonly<Record<string, number>>;
  readonly messages: readonly ParkedSummary[];
}

/** The AMQP properties a summary reads. */
export interface ParkedProperties {
  readonly messageId?: unknown;
  readonly headers?: Readonly<Record<string, unknown>> | undefined;
}

const MAX_TEXT = 500;
const MAX_URL = 2048;

function text(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return null;
}

function num(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : typeof v === 'bigint' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : null;
}

function clip(s: string | null, max: number): string | null {
  return s === null ? null : s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** The broker's own dead-lettering record (`x-death`, newest first), when there is one. */
function brokerDeath(headers: Readonly<Record<string, unknown>>): { reason: string | null; at: number | null } | null {
  const deaths = headers['x-death'];
  if (!Array.isArray(deaths) || deaths.length === 0) return null;
  // Any publisher can set x-death: one that is not a table must not stop the listing.
  const first: unknown = deaths[0];
  if (typeof first !== 'object' || first === null) return null;
  const d = first as Record<string, unknown>;
  // AMQP timestamps are seconds; amqplib gives a number, some clients a { value } wrapper.
  const t = num(d.time) ?? num((d.time as { value?: unknown } | undefined)?.value);
  return { reason: text(d.reason), at: t === null ? null : t * 1000 };
}

/** The reason a parked message is shown under (see `ParkedSummary.reason`). */
export function parkedReason(headers: Readonly<Record<string, unknown>>): string {
  const own = text(headers[H.deadReason]);
  if (own) return own;
  const death = brokerDeath(headers);
  return death?.reason ? `broker-${death.reason}` : 'unknown';
}

/**
 * The attempts of a parked message: `notify-dead-attempts` when it is one of
 * the two its tier can say (a copy an older notifyd redrove and parked again
 * may carry a stale one); else, for a message parked without it (by a
 * notifyd before it, or another program), estimated from the reason:
 * `invalid` and `disabled` are mostly given before the tier's attempt.
 */
function attemptsOf(tier: number | null, headers: Readonly<Record<string, unknown>>): number | null {
  if (tier === null) return null;
  const stated = num(headers[H.deadAttempts]);
  if (stated === tier || stated === tier + 1) return stated;
  const reason = text(headers[H.deadReason]);
  return reason === 'invalid' || reason === 'disabled' ? tier : tier + 1;
}

/**
 * Summarises one message of `P.dead` from its properties and body, never
 * throwing: a body that is not a notification still lists (id from the AMQP
 * `messageId`, no url).
 */
export function summariseParked(props: ParkedProperties, content: Buffer): ParkedSummary {
  const headers = props.headers ?? {};
  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(content.toString('utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
  } catch {
    /* not JSON: a message parked `invalid` may be anything */
  }
  const tier = num(headers[H.deadTier]) ?? num(headers[H.attempt]);
  const url = typeof body.url === 'string' ? clip(redactUrl(body.url), MAX_URL) : null;
  return {
    id: text(props.messageId) ?? (typeof body.id === 'string' ? body.id : ''),
    reason: parkedReason(headers),
    tier,
    attempts: attemptsOf(tier, headers),
    lastError: clip(text(headers[H.lastError]), MAX_TEXT),
    deadAt: num(headers[H.deadAt]) ?? brokerDeath(headers)?.at ?? null,
    url,
    merchant: typeof body.merchant === 'string' ? body.merchant : null,
    redriven: num(headers[H.redriven]) ?? 0,
  };
}

/**
 * Counts by `key`, as an object with an own property per key. Counted in a
 * Map: in a plain `{}`, a merchant named `constructor` or `toString` starts
 * from Object.prototype's function and `__proto__` is not counted at all.
 */
function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts = new Map<string, number>();
  for (const m of items) {
    const k = key(m);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return Object.fromEntries(counts);
}

/** Counts summaries by reason. */
export function countByReason(items: readonly Pick<ParkedSummary, 'reason'>[]): Record<string, number> {
  return countBy(items, (m) => m.reason);
}

/** Counts by merchant; `-` stands for notifications without one (the daemon's global signing). */
export function countByMerchant(items: readonly Pick<ParkedSummary, 'merchant'>[]): Record<string, number> {
  return countBy(items, (m) => m.merchant ?? '-');
}
