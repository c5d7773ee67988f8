/**
 * History records (DESIGN §11): what the ingress, the tier workers and the
 * master tell the recorder, through the broker (`P.history`), a batch of
 * them per AMQP message. Every record names its notification by id and
 * createdAt (the partition key) and is idempotent: written twice, it counts
 * once.
 */
import type { DeadReason } from '../core/message.js';

/** How a ladder (tier 0 onwards) started. */
export type RunVia = 'ingress' | 'client' | 'direct' | 'resend' | 'recover' | 'redrive';

/** A ladder started: the notification was accepted, resent or redriven. */
export interface RunRecord {
  readonly t: 'run';
  readonly id: string;
  /** The notification's createdAt (ms epoch). */
  readonly createdAt: number;
  readonly run: string;
  /** When (ms epoch). */
  readonly at: number;
  readonly via: RunVia;
  readonly merchant: string | null;
  readonly producer: string | null;
  readonly url: string;
  /**
   * The notification's JSON text (the AMQP message body, which parsed),
   * kept for a resend. On the wire it is embedded as JSON, not as a string:
   * escaping it cost the tier worker more than the rest of the record.
   */
  readonly content: string;
}

/**
 * An attempt, made or skipped, and what it led to when it was the last one.
 * It does not repeat the notification's URL and merchant: its ladder's record
 * carries them.
 */
export interface AttemptRecord {
  readonly t: 'attempt';
  readonly id: string;
  readonly createdAt: number;
  readonly run: string;
  readonly attempt: number;
  readonly tier: number;
  readonly startedAt: number;
  readonly durationMs: number;
  /** The HTTP status, when an answer came. */
  readonly status: number | null;
  readonly outcome: 'success' | 'retry' | 'dead' | 'skipped';
  readonly skipReason: string | null;
  readonly error: string | null;
  /** The first KiB of the answer. */
  readonly answer: string | null;
  /** Set when this attempt ended the ladder: delivered, or parked (with why). */
  readonly final: { readonly status: 'delivered' } | { readonly status: 'dead'; readonly reason: DeadReason } | null;
}

/** Parked without an attempt (invalid, its merchant disabled, out of attempts for its merchant). */
export interface DeadRecord {
  readonly t: 'dead';
  readonly id: string;
  readonly createdAt: number;
  readonly run: string;
  readonly at: number;
  readonly reason: DeadReason;
  readonly error: string;
  readonly merchant: string | null;
  readonly url: string;
}

export type HistoryRecord = RunRecord | AttemptRecord | DeadRecord;

/** How much of a merchant's answer is kept. */
export const ANSWER_BYTES = 1024;
/** Longest error text kept. */
const ERROR_CHARS = 500;

/**
 * PostgreSQL `text` cannot hold NUL, and a cut answer may end inside a UTF-8
 * sequence (it then decodes to U+FFFD): what is kept is made safe here.
 */
export function storableText(s: string | null | undefined, maxChars = ERROR_CHARS): string | null {
  if (s === null || s === undefined || s === '') return null;
  const cut = s.length > maxChars ? s.slice(0, maxChars) : s;
  return cut.includes('\u0000') ? cut.replace(/\u0000/g, '\uFFFD') : cut;
}

/** The first {@link ANSWER_BYTES} bytes of an answer, storable. */
export function answerText(body: string): string | null {
  // At most 3 UTF-8 bytes per UTF-16 unit: a short body fits without encoding it.
  const head = body.length * 3 <= ANSWER_BYTES ? body : Buffer.from(body.slice(0, ANSWER_BYTES), 'utf8').subarray(0, ANSWER_BYTES).toString('utf8');
  return storableText(head, ANSWER_BYTES);
}

/** A new ladder's id: time-ordered (base-36 ms) and unique enough per notification. */
export function newRunId(now = Date.now()): string {
  return `${now.toString(36)}${Math.floor(Math.random() * 36 ** 4)
    .toString(36)
    .padStart(4, '0')}`;
}

const str = (v: unknown): v is string => typeof v === 'string';
const strOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const int = (v: unknown): v is number => Number.isInteger(v);
const VIA = new Set<string>(['ingress', 'client', 'direct', 'resend', 'recover', 'redrive']);
const OUTCOMES = new Set<string>(['success', 'retry', 'dead', 'skipped']);
/** Latest createdAt a record may carry (the message validation allows no later one). */
const MAX_EPOCH_MS = Date.UTC(9999, 0, 1);

/** Earliest ladder start {@link runStartOf} believes: a run id that decodes to less is some other string. */
const MIN_RUN_MS = Date.UTC(2000, 0, 1);

/**
 * When the ladder of a run id from {@link newRunId} started (ms epoch); null
 * for a run id that is not one ('' for a ladder nobody recorded, or one a
 * program set itself).
 */
export function runStartOf(run: string): number | null {
  if (run.length < 5 || run.length > 16 || !/^[0-9a-z]+$/.test(run)) return null;
  const at = Number.parseInt(run.slice(0, -4), 36);
  return at >= MIN_RUN_MS && at < MAX_EPOCH_MS ? at : null;
}

/*
 * The wire format: one JSON array per record, positional, tagged by its
 * first element ("r" a ladder, "a" an attempt, "d" a park). Between
 * processes of one release only; arrays instead of objects halved the bytes
 * a tier worker sends per notification and the time it spends on them.
 *
 *   ["r", id, createdAt, run, at, via, merchant, producer, url, <notification JSON>]
 *   ["a", id, createdAt, run, attempt, tier, startedAt, durationMs, status, outcome, skipReason, error, answer, final, deadReason]
 *   ["d", id, createdAt, run, at, reason, error, merchant, url]
 *
 * `final` is null, "delivered" or "dead" (then `deadReason` says why).
 */

/**
 * One record as JSON. A ladder's `content` is already JSON text (a body that
 * parsed): it goes in as it is, unescaped; `checkRecord` turns it back into
 * text at the other end.
 */
export function serializeRecord(r: HistoryRecord): string {
  switch (r.t) {
    case 'run': {
      const head = JSON.stringify(['r', r.id, r.createdAt, r.run, r.at, r.via, r.merchant, r.producer, r.url]);
      return `${head.slice(0, -1)},${r.content}]`;
    }
    case 'attempt': {
      const f = r.final;
      return JSON.stringify(['a', r.id, r.createdAt, r.run, r.attempt, r.tier, r.startedAt, r.durationMs, r.status, r.outcome, r.skipReason, r.error, r.answer, f === null ? null : f.status, f?.status === 'dead' ? f.reason : null]);
    }
    case 'dead':
      return JSON.stringify(['d', r.id, r.createdAt, r.run, r.at, r.reason, r.error, r.merchant, r.url]);
  }
}

/**
 * Reads one record off the wire (a batch comes from other processes, maybe
 * of another version): what is not a well-formed record is reported and left
 * out, never written.
 */
export function checkRecord(v: unknown): HistoryRecord | null {
  if (!Array.isArray(v)) return null;
  const [t, id, createdAt, run] = v as unknown[];
  if (!(str(id) && id !== '' && num(createdAt) && createdAt >= 0 && createdAt < MAX_EPOCH_MS && str(run))) return null;
  switch (t) {
    case 'r': {
      if (v.length !== 10) return null;
      const [, , , , at, via, merchant, producer, url, content] = v as unknown[];
      if (!(num(at) && str(via) && VIA.has(via) && strOrNull(merchant) && strOrNull(producer) && str(url))) return null;
      const text = typeof content === 'object' && content !== null && !Array.isArray(content) ? JSON.stringify(content) : str(content) ? content : null;
      if (text === null) return null;
      return { t: 'run', id, createdAt, run, at, via: via as RunVia, merchant, producer, url, content: text };
    }
    case 'a': {
      if (v.length !== 15) return null;
      const [, , , , attempt, tier, startedAt, durationMs, status, outcome, skipReason, error, answer, fin, deadReason] = v as unknown[];
      if (!(int(attempt) && int(tier) && num(startedAt) && num(durationMs) && (status === null || int(status)) && str(outcome) && OUTCOMES.has(outcome))) return null;
      if (!(strOrNull(skipReason) && strOrNull(error) && strOrNull(answer))) return null;
      let final: AttemptRecord['final'];
      if (fin === null) final = null;
      else if (fin === 'delivered') final = { status: 'delivered' };
      else if (fin === 'dead' && str(deadReason)) final = { status: 'dead', reason: deadReason as DeadReason };
      else return null;
      return { t: 'attempt', id, createdAt, run, attempt, tier, startedAt, durationMs, status: status as number | null, outcome: outcome as AttemptRecord['outcome'], skipReason, error, answer, final };
    }
    case 'd': {
      if (v.length !== 9) return null;
      const [, , , , at, reason, error, merchant, url] = v as unknown[];
      if (!(num(at) && str(reason) && str(error) && strOrNull(merchant) && str(url))) return null;
      return { t: 'dead', id, createdAt, run, at, reason: reason as DeadReason, error, merchant, url };
    }
    default:
      return null;
  }
}

/** One batch as the body of one AMQP message. */
export function encodeBatch(records: readonly string[]): Buffer {
  return Buffer.from(`[${records.join(',')}]`, 'utf8');
}

/** The records of one AMQP message, and how many were refused. Throws when it is not a JSON array at all. */
export function decodeBatch(content: Buffer): { records: HistoryRecord[]; refused: number } {
  const raw = JSON.parse(content.toString('utf8')) as unknown;
  if (!Array.isArray(raw)) throw new Error('a history batch must be a JSON array');
  const records: HistoryRecord[] = [];
  let refused = 0;
  for (const r of raw) {
    const ok = checkRecord(r);
    if (ok) records.push(ok);
    else refused++;
  }
  return { records, refused };
}
