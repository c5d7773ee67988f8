/**
 * Claims in the history database for resends and recovers (DESIGN §11): a
 * notification is marked pending, atomically, before its new ladder is
 * published, so a second resend racing the first (or a retried one, or a
 * re-run recover) is refused at once instead of starting a second ladder
 * once the recorder has caught up. Queries: `history-claim.sql`,
 * `history-unclaim.sql`.
 */
import type pg from 'pg';
import { query } from '../db/sql.js';
import { emptyRow, ladderStart, newerStatus, type HistoryStatus, type NotificationRow, type StatusEvent } from './fold.js';

/** What a notification was before a claim, to answer with and to give back. */
export interface Claim {
  readonly id: string;
  /** `created_at` to the microsecond, as the reader's keys. */
  readonly key: string;
  /** The claim's time: the new ladder's start, ms epoch. */
  readonly at: number;
  readonly previousStatus: HistoryStatus;
  readonly previousStatusAt: string | null;
  readonly previousStatusRunAt: string | null;
  readonly previousDeadReason: string | null;
}

/** Claims on `notify_notifications` (the recorder's own table; the claim is what a run record would write). */
export class HistoryClaims {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Marks the notification pending as of `at` when its status is one of
   * `from`; null when it is not (or is gone).
   */
  async claim(id: string, key: string, at: number, from: readonly HistoryStatus[]): Promise<Claim | null> {
    const r = (await this.pool.query<Record<string, unknown>>(query('history-claim'), [id, key, at, from])).rows[0];
    if (!r) return null;
    return { id, key, at, previousStatus: r.previous_status as HistoryStatus, previousStatusAt: (r.previous_status_at as string | null) ?? null, previousStatusRunAt: (r.previous_status_run_at as string | null) ?? null, previousDeadReason: (r.previous_dead_reason as string | null) ?? null };
  }

  /**
   * Gives a claim back (its ladder never reached the broker), unless a newer
   * status replaced it meanwhile. The end of an older ladder recorded while
   * the claim stood lost to it (the claim is a newer ladder's start): it
   * applies again now, in the recorder's own order, so a forced resend that
   * failed does not leave a notification delivered meanwhile pending.
   */
  async release(c: Claim): Promise<void> {
    await this.pool.query(query('history-unclaim'), [c.id, c.key, c.at, c.previousStatus, c.previousStatusAt, c.previousDeadReason, c.previousStatusRunAt]);
    const createdAt = Date.parse(c.key);
    const { rows } = await this.pool.query<{ run: string; end_ms: number; outcome: string }>(query('history-ends-of'), [c.id, c.key]);
    let last: StatusEvent | null = null;
    for (const r of rows) {
      const at = Number(r.end_ms);
      const e: StatusEvent = { status: r.outcome === 'success' ? 'delivered' : 'dead', at, runAt: ladderStart(r.run, at, createdAt) };
      if (newerStatus(e, last)) last = e;
    }
    if (last === null) return;
    // Only the status event: every other field is kept as it is (COALESCE, GREATEST, no new attempts). The reason a
    // ladder parked is not kept per attempt: a dead one comes back without it.
    const row: NotificationRow = { ...emptyRow(c.id, createdAt), status: last.status, statusAt: last.at, statusRunAt: last.runAt };
    await this.pool.query(query('history-upsert-notifications'), [JSON.stringify([row])]);
  }
}
