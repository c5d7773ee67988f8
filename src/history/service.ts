/**
 * The history API's logic (DESIGN §11), shared by the ingress (producers)
 * and the admin port (operators): lookups, listings, resend and recover.
 * Who publishes is given: the ingress through its publisher, the master
 * through its broker connection; either starts a new ladder from tier 0 and
 * records it, so the history of the same id grows by a run.
 */
import type { LimitsConfig } from '../core/config.js';
import { ErrorCodes, NotifyError, toErrorData, type ErrorData } from '../core/errors.js';
import { decodeNotification, type Notification } from '../core/message.js';
import type { HistoryReader, NotificationPage, NotificationTimeline } from './reader.js';
import type { ListCursor, ListFilter, RecoverRequest } from './query-params.js';

/**
 * Starts a new ladder for `n` (tier 0, same id) and records it; resolves once
 * the broker has it. `producer` is the ingress token that asked (null on the
 * admin port).
 */
export type StartLadder = (n: Notification, via: 'resend' | 'recover', producer: string | null) => Promise<{ run: string }>;

/** What a resend answers. */
export interface ResendResult {
  readonly id: string;
  /** The new ladder's id (`notify-run`). */
  readonly run: string;
  /** Its status before the resend. */
  readonly previousStatus: string;
}

/** What a recover answers. */
export interface RecoverResult {
  readonly merchant: string;
  readonly since: number;
  readonly until: number;
  /** Dead notifications of the merchant in the window. */
  readonly matched: number;
  readonly resent: number;
  /** Those that could not be sent again, and why (at most `RECOVER_REPORT_MAX` listed). */
  readonly failed: readonly { readonly id: string; readonly error: ErrorData }[];
}

/** Dead notifications read per query of a recover. */
const RECOVER_PAGE = 200;
/** Resends of a recover waiting for the broker's confirm at once. */
const RECOVER_PARALLEL = 16;
/** Failures listed in a recover's answer (the count is complete). */
const RECOVER_REPORT_MAX = 100;

export class HistoryService {
  constructor(
    private readonly reader: HistoryReader,
    private readonly startLadder: StartLadder,
    /** The limits the resent notification is validated with, as a tier would (read per call: a reload applies). */
    private readonly limits: () => LimitsConfig,
  ) {}

  /** A notification's timeline; `NOT_FOUND` when the history does not know it. */
  async get(id: string): Promise<NotificationTimeline> {
    const t = await this.reader.get(id);
    if (!t) throw new NotifyError(ErrorCodes.NOT_FOUND, `no notification ${id} in the history (older than the retention, or never accepted)`);
    return t;
  }

  list(filter: ListFilter): Promise<NotificationPage> {
    return this.reader.list(filter);
  }

  /**
   * Sends a notification again from tier 0 with the same id. One still
   * pending is refused (`NOTIFICATION_PENDING`: it would reach the merchant
   * twice at once) unless `force`.
   */
  async resend(id: string, force: boolean, producer: string | null): Promise<ResendResult> {
    const s = await this.reader.stored(id);
    if (!s) throw new NotifyError(ErrorCodes.NOT_FOUND, `no notification ${id} in the history`);
    if (s.view.status === 'pending' && !force) {
      throw new NotifyError(ErrorCodes.NOTIFICATION_PENDING, `notification ${id} is still pending (its ladder is under way); resend with force=true to send it again anyway`);
    }
    const { run } = await this.startLadder(this.resendable(id, s.content), 'resend', producer);
    return { id, run, previousStatus: s.view.status };
  }

  /**
   * Sends again every dead notification of `merchant` created in the window
   * (Svix's recover), in pages, oldest first. One that cannot be resent is
   * reported and skipped; a broker failure stops the recover (what was sent
   * stays sent; running it again sends only what is still dead).
   */
  async recover(r: RecoverRequest, producer: string | null): Promise<RecoverResult> {
    let matched = 0;
    let resent = 0;
    const failed: { id: string; error: ErrorData }[] = [];
    let after: ListCursor | null = null;
    for (;;) {
      const page = await this.reader.deadOfMerchant(r.merchant, r.since, r.until, after, RECOVER_PAGE);
      const ready: Notification[] = [];
      for (const d of page) {
        matched++;
        try {
          ready.push(this.resendable(d.id, d.content));
        } catch (err) {
          if (failed.length < RECOVER_REPORT_MAX) failed.push({ id: d.id, error: toErrorData(err) });
        }
      }
      // A few publishes wait for their confirm at once: one at a time, a recover of thousands would take minutes.
      for (let i = 0; i < ready.length; i += RECOVER_PARALLEL) {
        await Promise.all(ready.slice(i, i + RECOVER_PARALLEL).map((n) => this.startLadder(n, 'recover', producer)));
        resent += Math.min(RECOVER_PARALLEL, ready.length - i);
      }
      if (page.length < RECOVER_PAGE) break;
      after = page[page.length - 1]!.key;
    }
    return { merchant: r.merchant, since: r.since, until: r.until, matched, resent, failed };
  }

  /** The stored notification, checked as a tier would check it; `NOT_RESENDABLE` when it cannot be sent. */
  private resendable(id: string, content: string | null): Notification {
    if (content === null) throw new NotifyError(ErrorCodes.NOT_RESENDABLE, `the history holds only attempts of ${id}, not the notification itself (published before history was on, or straight to a later tier)`);
    try {
      return decodeNotification(Buffer.from(content, 'utf8'), this.limits());
    } catch (err) {
      throw new NotifyError(ErrorCodes.NOT_RESENDABLE, `notification ${id} cannot be sent again: ${(err as Error).message}`, (err as NotifyError).field);
    }
  }
}
