/**
 * Which parked copies a redrive must drop rather than move (DESIGN §11): a
 * notification resent or recovered after it was parked is on a newer
 * ladder; its old copy in `P.dead`, moved back to tier 0, would reach the
 * merchant again. The history says so: the notification's latest ladder
 * started after the copy's dead time, or it was delivered after it. A
 * resend's claim after it, with no ladder recorded yet, keeps the copy
 * parked. A copy moved is claimed like a resend (a resend right after the
 * redrive must not start a second ladder). One transaction per batch of
 * copies.
 */
import type pg from 'pg';
import { H } from '../core/message.js';
import { inTransaction } from '../db/pool.js';
import { query } from '../db/sql.js';
import { ladderStart } from './fold.js';

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
  /** When the ladder that set the status started (ms epoch); null or absent when not known. */
  readonly statusRunAt?: number | null;
  /** When the latest ladder other than the copy's own started (ms epoch), as far as the recorder has written. */
  readonly otherRunAt: number | null;
}

/** The notification a copy is of, its own ladder and when it was parked; null when the copy does not say (then it is never dropped). */
export function copyKey(c: ParkedCopy): { id: string; createdAt: number; run: string; deadAt: number } | null {
  const deadAt = Number(c.headers[H.deadAt]);
  if (!Number.isFinite(deadAt) || deadAt <= 0) return null;
  let n: { id?: unknown; createdAt?: unknown };
  try {
    n = JSON.parse(c.content.toString('utf8')) as typeof n;
  } catch {
    return null;
  }
  if (typeof n?.id !== 'string' || typeof n.createdAt !== 'number' || !Number.isFinite(n.createdAt)) return null;
  const run = c.headers[H.run];
  // The recorder keys a notification by its createdAt without the fraction of a ms (fold.ts).
  return { id: n.id, createdAt: Math.trunc(n.createdAt), run: typeof run === 'string' ? run : '', deadAt };
}

/**
 * How long a resend's claim with no ladder recorded keeps a parked copy held.
 * A recorder that lags looks the same as a claim never published, and a
 * scheduled redrive acts with nobody watching: held too briefly, a lagging
 * recorder turns into a second delivery; held long, a copy whose claim was
 * lost only waits (parked, listed; `resend --force` sends it at any time).
 */
export const HOLD_MAX_MS = 24 * 3_600_000;

/**
 * What a redrive does with a parked copy: `move` it back to tier 0, `drop`
 * it (acked: the notification was sent again since), or `hold` it (put back
 * in `P.dead`: a resend may be under way).
 */
export type CopyVerdict = 'move' | 'drop' | 'hold';

/**
 * Pure: what to do with a copy parked at `deadAt`. Dropped when another
 * ladder (not the copy's own, whose start may be recorded a ms after its
 * dead time) started after it was parked, or the notification was delivered
 * since, or on the copy's own ladder or a later one (`ownRunAt`, its start:
 * a duplicate of a delivered attempt runs on down the ladder after a lost
 * ack and parks later than the delivery). Held when a resend or recover
 * claimed it after it was parked and
 * the history has no ladder of it yet: the ladder is on the broker with its
 * run record still on its way to the recorder (moving the copy would
 * deliver twice), or it was never published (a crash between claim and
 * publish: dropping the copy would lose it). Held, it stays parked, and a
 * later redrive drops or moves it once the history knows which. A claim
 * older than `HOLD_MAX_MS` with still no ladder recorded is taken for one
 * never published whose give-back failed too (nothing else clears it): the
 * copy is moved. A history that lags otherwise only makes a copy look
 * current: it is moved as before.
 */
export function copyVerdict(deadAt: number, h: HistorySince | undefined, now: number, ownRunAt: number | null = null): CopyVerdict {
  if (!h) return 'move';
  if (h.otherRunAt !== null && h.otherRunAt > deadAt) return 'drop';
  const since = h.statusAt !== null && h.statusAt > deadAt;
  if (since && h.status === 'delivered') return 'drop';
  const deliveredRunAt = h.statusRunAt ?? h.statusAt;
  if (h.status === 'delivered' && ownRunAt !== null && deliveredRunAt !== null && deliveredRunAt >= ownRunAt) return 'drop';
  if (since && h.status === 'pending' && now - h.statusAt! < HOLD_MAX_MS) return 'hold';
  return 'move';
}

/** What a redrive's claim replaced, to give back when the copy was not moved after all. */
interface ParkedClaim {
  readonly id: string;
  /** `created_at` in ms, as the copy says it (the rows are locked by it). */
  readonly createdMs: number;
  /** `created_at` to the microsecond. */
  readonly key: string;
  readonly status: string;
  readonly statusAt: string | null;
  readonly statusRunAt: string | null;
  readonly deadReason: string | null;
}

/**
 * One batch of a redrive in the history. `open` asks the database for an
 * answer before the redrive takes any parked copy, so a database that
 * cannot be reached fails the redrive with nothing taken (each copy given
 * back with a requeue counts as a redelivery, and quorum queues on RabbitMQ
 * 4 drop a message after 20).
 */
export interface RedriveBatch {
  /**
   * One verdict per copy, in order. The copies to `move` that the redrive
   * moves (not sticky) and the history knows are claimed: marked pending
   * as of `at` (their new ladders' start), as a resend's claim is, so a
   * resend or recover before the recorder has the new ladder is refused
   * rather than starting a second one. A second copy of a notification in
   * the batch is `hold`: one ladder at a time. Called once.
   */
  decide(copies: readonly (ParkedCopy & { readonly moves: boolean })[], at: number): Promise<readonly CopyVerdict[]>;
  /** Gives back the claims of the copies from index `from` on (surely not moved); best effort, one statement. */
  giveBack(from: number): Promise<void>;
}

/**
 * The history's part in a redrive: in one transaction the batch's rows are
 * locked (`history-lock-parked.sql`, in the recorder's order, by id and
 * created_at, so the two never deadlock), then read
 * (`history-superseded.sql`: a statement of its own, so it sees the runs
 * and the status as of the same moment, after any lock wait), and the
 * moved ones claimed (`history-claim-parked.sql`).
 */
export class RedriveClaims {
  constructor(
    private readonly pool: pg.Pool,
    /** Told of claims that could not be given back (their copies are held until a day has passed, or a forced resend). */
    private readonly onStuck: (ids: readonly string[], err: unknown) => void = () => undefined,
  ) {}

  async open(): Promise<RedriveBatch> {
    await this.pool.query('SELECT 1');
    let claimed: (ParkedClaim | null)[] = [];
    let at = 0;
    return {
      decide: async (copies, now) => {
        at = now;
        const keys = copies.map(copyKey);
        const asked = keys.flatMap((k, i) => (k === null ? [] : [{ ...k, i }]));
        const out = copies.map((): CopyVerdict => 'move');
        if (asked.length === 0) return out;
        const made: (ParkedClaim | null)[] = copies.map(() => null);
        let sent = false;
        try {
          await inTransaction(this.pool, async (c) => {
            await c.query(query('history-lock-runs'));
            await c.query(query('history-lock-parked'), [asked.map((k) => k.id), asked.map((k) => k.createdAt)]);
            const { rows } = await c.query<Record<string, unknown>>(query('history-superseded'), [asked.map((k) => k.id), asked.map((k) => k.createdAt), asked.map((k) => k.run)]);
            const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
            const moving = new Set<string>();
            // In the batch's order (ord), by position, not by id: two notifications may share an id (a producer's retry with another createdAt).
            for (const r of [...rows].sort((a, b) => Number(a.ord) - Number(b.ord))) {
              const k = asked[Number(r.ord) - 1]!;
              let v = copyVerdict(k.deadAt, { status: r.status as string, statusAt: num(r.status_ms), statusRunAt: num(r.status_run_ms), otherRunAt: num(r.other_run_ms) }, at, ladderStart(k.run, k.deadAt, k.createdAt));
              if (v === 'move' && copies[k.i]!.moves) {
                const row = `${k.id}\u0000${k.createdAt}`;
                if (moving.has(row)) v = 'hold';
                else {
                  moving.add(row);
                  made[k.i] = { id: k.id, createdMs: k.createdAt, key: r.key as string, status: r.status as string, statusAt: (r.status_at as string | null) ?? null, statusRunAt: (r.status_run_at as string | null) ?? null, deadReason: (r.dead_reason as string | null) ?? null };
                }
              }
              out[k.i] = v;
            }
            const claims = made.filter((x): x is ParkedClaim => x !== null);
            sent = claims.length > 0;
            if (!sent) return;
            const r = await c.query<{ id: string; key: string }>(query('history-claim-parked'), [claims.map((x) => x.id), claims.map((x) => x.key), at, claims.map((x) => x.status), claims.map((x) => x.statusAt)]);
            // A row changed since it was read (one the lock did not cover) is not claimed: its copy is held.
            const got = new Set(r.rows.map((x) => `${x.id}\u0000${x.key}`));
            made.forEach((x, j) => {
              if (x !== null && !got.has(`${x.id}\u0000${x.key}`)) {
                made[j] = null;
                out[j] = 'hold';
              }
            });
          });
        } catch (err) {
          // A COMMIT whose answer was lost may have committed: what it may have claimed is given back (only where the claim still stands).
          if (sent) await this.unclaim(made, at);
          throw err;
        }
        claimed = made;
        return out;
      },
      giveBack: async (from) => {
        const back = claimed.slice(from);
        claimed = claimed.slice(0, from);
        await this.unclaim(back, at);
      },
    };
  }

  /** Gives back claims made at `at`, each only while it still stands (no newer record replaced it); never throws. */
  private async unclaim(claims: readonly (ParkedClaim | null)[], at: number): Promise<void> {
    const back = claims.filter((x): x is ParkedClaim => x !== null);
    if (back.length === 0) return;
    await inTransaction(this.pool, async (c) => {
      await c.query(query('history-lock-parked'), [back.map((x) => x.id), back.map((x) => x.createdMs)]);
      await c.query(query('history-unclaim-parked'), [back.map((x) => x.id), back.map((x) => x.key), back.map((x) => x.status), back.map((x) => x.statusAt), back.map((x) => x.deadReason), at, back.map((x) => x.statusRunAt)]);
    }).catch((err: unknown) => this.onStuck(back.map((x) => x.id), err));
  }
}
