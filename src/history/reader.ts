/**
 * Reads the delivery history (DESIGN §11) for the API, the console and
 * `ctl`: one notification with its ladders and attempts, keyset pages of
 * notifications, and a merchant's dead ones in a window (recover). Queries
 * live in `sql/queries/history-*.sql` and are bound by `created_at` where
 * the caller knows it, so they touch the partitions of the days concerned.
 */
import type pg from 'pg';
import { query } from '../db/sql.js';
import type { HistoryStatus } from './fold.js';
import { encodeCursor, type ListCursor, type ListFilter } from './query-params.js';

/** A notification as the API shows it; times are ms epoch. */
export interface NotificationView {
  readonly id: string;
  readonly createdAt: number;
  readonly merchant: string | null;
  /** The ingress token that submitted it, when one did. */
  readonly producer: string | null;
  readonly url: string;
  readonly status: HistoryStatus;
  /** Why it was parked, when dead (`exhausted`, `status-410`, `disabled`, …). */
  readonly deadReason: string | null;
  /** Attempts over every ladder. */
  readonly attempts: number;
  readonly lastAttemptAt: number | null;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  readonly deliveredAt: number | null;
  readonly deadAt: number | null;
  /** Whether the history holds the notification itself (a resend needs it). */
  readonly resendable: boolean;
}

/** One ladder: accepted, resent, recovered or redriven. */
export interface RunView {
  readonly run: string;
  readonly startedAt: number;
  readonly via: string;
  readonly producer: string | null;
}

/** One attempt, made or skipped (origin isolation). */
export interface AttemptView {
  /** The ladder it belongs to ('' when its start was never recorded). */
  readonly run: string;
  /** 0-based within its ladder. */
  readonly attempt: number;
  readonly tier: number;
  readonly startedAt: number;
  readonly durationMs: number;
  /** The HTTP status, when an answer came. */
  readonly status: number | null;
  readonly outcome: 'success' | 'retry' | 'dead' | 'skipped';
  /** No request was made (its origin was failing or limited): `reason` says why. */
  readonly skipped: boolean;
  readonly reason: string | null;
  readonly error: string | null;
  /** The first KiB of the merchant's answer. */
  readonly answer: string | null;
}

/** `GET …/notifications/<id>`. */
export interface NotificationTimeline {
  readonly notification: NotificationView;
  readonly runs: readonly RunView[];
  readonly attempts: readonly AttemptView[];
}

/** `GET …/notifications?…`: a page, and the cursor of the next one (null on the last). */
export interface NotificationPage {
  readonly notifications: readonly NotificationView[];
  readonly nextCursor: string | null;
}

/** A dead notification, with what a resend needs. */
export interface DeadEntry {
  readonly id: string;
  readonly key: ListCursor;
  readonly content: string | null;
}

/**
 * The history API's pools cancel a statement after this long (a 503 to
 * retry): their few connections serve every lookup, and one slow listing
 * must not hold them for minutes.
 */
export const HISTORY_STATEMENT_TIMEOUT_MS = 10_000;

type Row = Record<string, unknown>;

const ms = (v: unknown): number | null => (v === null || v === undefined ? null : Math.round(Number(v)));

function notificationView(r: Row, resendable: boolean): NotificationView {
  return {
    id: r.id as string,
    createdAt: ms(r.created_ms)!,
    merchant: (r.merchant as string | null) ?? null,
    producer: (r.producer as string | null) ?? null,
    url: r.url as string,
    status: r.status as HistoryStatus,
    deadReason: (r.dead_reason as string | null) ?? null,
    attempts: Number(r.attempts),
    lastAttemptAt: ms(r.last_attempt_ms),
    lastStatus: (r.last_status as number | null) ?? null,
    lastError: (r.last_error as string | null) ?? null,
    deliveredAt: ms(r.delivered_ms),
    deadAt: ms(r.dead_ms),
    resendable,
  };
}

/** One notification's row with the notification itself, for a resend. */
export interface StoredNotification {
  readonly view: NotificationView;
  readonly content: string | null;
}

export class HistoryReader {
  constructor(private readonly pool: pg.Pool) {}

  /** The notification's row, or null when the history does not know it. */
  async stored(id: string): Promise<(StoredNotification & { readonly key: string }) | null> {
    const r = (await this.pool.query<Row>(query('history-get-notification'), [id])).rows[0];
    if (!r) return null;
    const content = (r.content as string | null) ?? null;
    return { view: notificationView(r, content !== null), content, key: r.created_key as string };
  }

  /** A notification with its ladders and attempts, or null. */
  async get(id: string): Promise<NotificationTimeline | null> {
    const s = await this.stored(id);
    if (!s) return null;
    const [runs, attempts] = await Promise.all([this.pool.query<Row>(query('history-runs-of'), [id, s.key]), this.pool.query<Row>(query('history-attempts-of'), [id, s.key])]);
    return {
      notification: s.view,
      runs: runs.rows.map((r) => ({ run: r.run as string, startedAt: ms(r.started_ms)!, via: r.via as string, producer: (r.producer as string | null) ?? null })),
      attempts: attempts.rows.map((a) => ({
        run: a.run as string,
        attempt: Number(a.attempt),
        tier: Number(a.tier),
        startedAt: ms(a.started_ms)!,
        durationMs: Number(a.duration_ms),
        status: (a.http_status as number | null) ?? null,
        outcome: a.outcome as AttemptView['outcome'],
        skipped: a.outcome === 'skipped',
        reason: (a.skip_reason as string | null) ?? null,
        error: (a.error as string | null) ?? null,
        answer: (a.answer as string | null) ?? null,
      })),
    };
  }

  /** A page of notifications, newest first. */
  async list(f: ListFilter): Promise<NotificationPage> {
    const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
    // One row more than asked says whether there is a next page.
    const { rows } = await this.pool.query<Row>(query('history-list'), [f.merchant, f.status, iso(f.since), iso(f.until), f.cursor?.at ?? null, f.cursor?.id ?? null, f.limit + 1]);
    const page = rows.slice(0, f.limit);
    const last = page[page.length - 1];
    return {
      notifications: page.map((r) => notificationView(r, r.has_content === true)),
      nextCursor: rows.length > f.limit && last ? encodeCursor({ at: last.created_key as string, id: last.id as string }) : null,
    };
  }

  /** Up to `limit` of a merchant's dead notifications created in [since, until), oldest first, after `after`. */
  async deadOfMerchant(merchant: string, since: number, until: number, after: ListCursor | null, limit: number): Promise<DeadEntry[]> {
    const { rows } = await this.pool.query<Row>(query('history-dead-of-merchant'), [merchant, new Date(since).toISOString(), new Date(until).toISOString(), after?.at ?? null, after?.id ?? null, limit]);
    return rows.map((r) => ({ id: r.id as string, key: { at: r.created_key as string, id: r.id as string }, content: (r.content as string | null) ?? null }));
  }
}
