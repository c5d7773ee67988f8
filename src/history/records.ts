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

/** An attempt, made or skipped, and what it led to when it was the last one. */
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
  readonly merchant: string | null;
  readonly url: string;
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

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const str = (v: unknown): v is string => typeof v === 'string';
const strOrNull = (v: unknown): boolean => v === null || typeof v === 'string';
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const int = (v: unknown): v is number => Number.isInteger(v);
const VIA = new Set<string>(['ingress', 'client', 'direct', 'resend', 'recover', 'redrive']);
const OUTCOMES = new Set<string>(['success', 'retry', 'dead', 'skipped']);
/** Latest createdAt a record may carry (the message validation allows no later one). */
const MAX_EPOCH_MS = Date.UTC(9999, 0, 1);

function base(r: Record<string, unknown>): boolean {
  return str(r.id) && r.id !== '' && num(r.createdAt) && r.createdAt >= 0 && r.createdAt < MAX_EPOCH_MS && str(r.run) && strOrNull(r.merchant) && str(r.url);
}

/**
 * Checks one decoded record (a batch comes from other processes, maybe of
 * another version): what fails is reported and left out, never written.
 */
export function checkRecord(v: unknown): HistoryRecord | null {
  if (!isObj(v) || !base(v)) return null;
  switch (v.t) {
    case 'run': {
      if (!(num(v.at) && str(v.via) && VIA.has(v.via) && strOrNull(v.producer))) return null;
      // Embedded as JSON on the wire (see serializeRecord); a string is accepted too.
      if (isObj(v.content)) return { ...(v as unknown as RunRecord), content: JSON.stringify(v.content) };
      return str(v.content) ? (v as unknown as RunRecord) : null;
    }
    case 'attempt': {
      const f = v.final;
      const finalOk = f === null || (isObj(f) && (f.status === 'delivered' || (f.status === 'dead' && str(f.reason))));
      return int(v.attempt) &&
        int(v.tier) &&
        num(v.startedAt) &&
        num(v.durationMs) &&
        (v.status === null || int(v.status)) &&
        str(v.outcome) &&
        OUTCOMES.has(v.outcome) &&
        strOrNull(v.skipReason) &&
        strOrNull(v.error) &&
        strOrNull(v.answer) &&
        finalOk
        ? (v as unknown as AttemptRecord)
        : null;
    }
    case 'dead':
      return num(v.at) && str(v.reason) && str(v.error) ? (v as unknown as DeadRecord) : null;
    default:
      return null;
  }
}

/**
 * One record as JSON. A ladder's `content` is already JSON text (a body that
 * parsed): it goes in as it is, unescaped; `checkRecord` turns it back into
 * text at the other end.
 */
export function serializeRecord(r: HistoryRecord): string {
  if (r.t !== 'run') return JSON.stringify(r);
  // A literal of a fixed shape: V8 stringifies it on its fast path (a rest-spread copy is not).
  const head = JSON.stringify({ t: r.t, id: r.id, createdAt: r.createdAt, run: r.run, at: r.at, via: r.via, merchant: r.merchant, producer: r.producer, url: r.url });
  return `${head.slice(0, -1)},"content":${r.content}}`;
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
