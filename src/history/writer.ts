/**
 * Writes folded history batches to PostgreSQL (DESIGN §11): one transaction
 * per batch, three statements whatever its size (arrays through `unnest`),
 * idempotent, so a batch written again after a crash changes nothing.
 */
import type pg from 'pg';
import { inTransaction } from '../db/pool.js';
import { query } from '../db/sql.js';
import { countNewAttempts, type Folded } from './fold.js';

/** What one write did. */
export interface WriteResult {
  /** Records that added a row (ladder or attempt) or changed a notification. */
  readonly runsNew: number;
  readonly attemptsNew: number;
  /** Attempt and ladder rows that were there already. */
  readonly duplicates: number;
}

/**
 * Whether a failed write is worth a retry of the same batch: everything but
 * the data itself being refused. Only SQLSTATE classes 22 (data exception:
 * a bad byte sequence, a value too long), 23 (integrity constraint) and 54
 * (program limit: a row too large) say that this batch can never be
 * written; the recorder then splits it down to the one message at fault and
 * drops that. Anything else is the database's state, not the data's, and is
 * waited out with the batch kept in the queue: no SQLSTATE (a socket error
 * such as EHOSTUNREACH or ENOTFOUND while the database's host is away),
 * connection and shutdown classes, a standby reached during a failover
 * (25006 read-only), credentials being rotated (28xxx), a database not
 * created or not migrated yet (3D000, 42P01, 42883). Dropping on those
 * emptied `P.history` into nothing for as long as such an outage lasted.
 */
export function retryableDbError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return !(typeof code === 'string' && /^(22|23|54)[0-9A-Z]{3}$/.test(code));
}

/** `no partition of relation … found for row`: a day's partitions are missing (dropped, or never made). */
export function missingPartition(err: unknown): boolean {
  const e = err as { code?: unknown; routine?: unknown; message?: unknown } | null;
  if (e?.code !== '23514') return false;
  // The server's routine, not its message: a server whose lc_messages is not English words the message its own way,
  // and a missing day taken for refused data would drop the batch.
  return e.routine === 'ExecFindPartition' || /no partition of relation/.test(String(e.message));
}

export class HistoryWriter {
  /** Days whose partitions are known to exist. */
  private readonly days = new Set<string>();

  constructor(private readonly pool: pg.Pool) {}

  /** Makes sure the partitions of these days exist (cached; each creation is its own short transaction). */
  async ensureDays(days: readonly string[]): Promise<void> {
    for (const d of days) {
      if (this.days.has(d)) continue;
      await this.pool.query(query('history-add-day'), [d]);
      this.days.add(d);
    }
  }

  /** Forgets which partitions exist (after a "no partition" error: the retention job dropped one). */
  forgetDays(): void {
    this.days.clear();
  }

  /** Writes one folded batch in one transaction. */
  async write(f: Folded): Promise<WriteResult> {
    await this.ensureDays(f.days);
    return inTransaction(this.pool, async (c) => {
      // Each statement takes its rows as one JSON array (json_to_recordset): one string for the whole
      // batch instead of pg's escaping of a dozen arrays, element by element.
      let runsNew = 0;
      if (f.runs.length > 0) runsNew = (await c.query(query('history-insert-runs'), [JSON.stringify(f.runs)])).rowCount ?? 0;
      let inserted: { id: string; createdAt: number }[] = [];
      if (f.attempts.length > 0) {
        const res = await c.query<{ notification_id: string; created_ms: number }>(query('history-insert-attempts'), [JSON.stringify(f.attempts)]);
        inserted = res.rows.map((row) => ({ id: row.notification_id, createdAt: Math.round(Number(row.created_ms)) }));
      }
      // Counted on copies: a batch retried after a failed transaction must count from zero again.
      const notes = f.notifications.map((n) => ({ ...n, attempts: 0 }));
      countNewAttempts(notes, inserted);
      if (notes.length > 0) await c.query(query('history-upsert-notifications'), [JSON.stringify(notes)]);
      return { runsNew, attemptsNew: inserted.length, duplicates: f.runs.length - runsNew + f.attempts.length - inserted.length };
    });
  }

  /** Drops the days past the retention and adds today's and the next two (the retention job). Returns the days dropped. */
  async retain(retentionMs: number, now = Date.now()): Promise<string[]> {
    const ahead = [0, 1, 2].map((d) => new Date(now + d * 86_400_000).toISOString().slice(0, 10));
    await this.ensureDays(ahead);
    const res = await this.pool.query<{ day: string }>(query('history-drop-before'), [new Date(now - retentionMs)]);
    if (res.rows.length > 0) this.forgetDays();
    return res.rows.map((r) => r.day);
  }
}
