/**
 * Which parked copies a redrive must drop rather than move (DESIGN §11): a
 * notification resent or recovered after it was parked is on a newer
 * ladder; its old copy in `P.dead`, moved back to tier 0, would reach the
 * merchant again. The history says so: the notification's latest ladder
 * started after the copy's dead time, or its status was set to something
 * other than `dead` after it (a resend's claim, a delivery). One query per
 * batch of copies (`history-superseded.sql`).
 */
import type pg from 'pg';
import { query } from '../db/sql.js';

/** What the redrive knows of a parked copy. */
export interface ParkedCopy {
  readonly content: Buffer;
  readonly headers: Readonly<Record<string, unknown>>;
}

/** What the history knows of the copy's notification since. */
export interface HistorySince {
  readonly status: string;
  /** When the status was set (ms epoch). */
  readonly statusAt: number | null;
  /** When its latest ladder started (ms epoch), as far as the recorder has written. */
  readonly lastRunAt: number | null;
}

/** The notification a copy is of, and when it was parked; null when the copy does not say (then it is never dropped). */
export function copyKey(c: ParkedCopy): { id: string; createdAt: number; deadAt: number } | null {
  const deadAt = Number(c.headers['notify-dead-at']);
  if (!Number.isFinite(deadAt) || deadAt <= 0) return null;
  let n: { id?: unknown; createdAt?: unknown };
  try {
    n = JSON.parse(c.content.toString('utf8')) as typeof n;
  } catch {
    return null;
  }
  if (typeof n?.id !== 'string' || typeof n.createdAt !== 'number' || !Number.isFinite(n.createdAt)) return null;
  // The recorder keys a notification by its createdAt without the fraction of a ms (fold.ts).
  return { id: n.id, createdAt: Math.trunc(n.createdAt), deadAt };
}

/**
 * Pure: whether a copy parked at `deadAt` is superseded. Strictly after:
 * the copy's own ladder started before it was parked, and its own dead
 * event is not "other than dead". A history that lags (the recorder behind)
 * only makes a copy look current, never superseded: it is moved as before.
 */
export function isSuperseded(deadAt: number, h: HistorySince | undefined): boolean {
  if (!h) return false;
  if (h.lastRunAt !== null && h.lastRunAt > deadAt) return true;
  return h.status !== 'dead' && h.statusAt !== null && h.statusAt > deadAt;
}

/** Looks a batch of parked copies up in the history: one boolean per copy, in order. */
export class SupersededLookup {
  constructor(private readonly pool: pg.Pool) {}

  async check(copies: readonly ParkedCopy[]): Promise<boolean[]> {
    const keys = copies.map(copyKey);
    const asked = keys.filter((k): k is NonNullable<typeof k> => k !== null);
    if (asked.length === 0) return copies.map(() => false);
    const { rows } = await this.pool.query<Record<string, unknown>>(query('history-superseded'), [asked.map((k) => k.id), asked.map((k) => k.createdAt)]);
    const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
    const known = new Map<string, HistorySince>(rows.map((r) => [r.id as string, { status: r.status as string, statusAt: num(r.status_ms), lastRunAt: num(r.last_run_ms) }]));
    return keys.map((k) => k !== null && isSuperseded(k.deadAt, known.get(k.id)));
  }
}
