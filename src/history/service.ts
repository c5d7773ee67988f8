/**
 * The history API's logic (DESIGN §11), shared by the ingress (producers)
 * and the admin port (operators): lookups, listings, resend and recover.
 * Who publishes is given: the ingress through its publisher, the master
 * through its broker connection; either starts a new ladder from tier 0 and
 * records it, so the history of the same id grows by a run.
 */
import type { LimitsConfig } from '../core/config.js';
import { ErrorCodes, NotifyError, hasCode, toErrorData, type ErrorData } from '../core/errors.js';
import { statusForError } from '../core/http-util.js';
import { decodeNotification, type Notification } from '../core/message.js';
import type { Claim, HistoryClaims } from './claims.js';
import { historyErrorData } from './database-away.js';
import type { HistoryStatus } from './fold.js';
import type { HistoryReader, NotificationPage, NotificationTimeline } from './reader.js';
import type { ListCursor, ListFilter, RecoverRequest } from './query-params.js';

/**
 * Starts a new ladder for `n` (tier 0, same id) and records it; resolves once
 * the broker has it. `producer` is the ingress token that asked (null on the
 * admin port); `at` is the ladder's start (its run record's time), chosen
 * before the claim so the claim and the run agree.
 */
export type StartLadder = (n: Notification, via: 'resend' | 'recover', producer: string | null, at: number) => Promise<{ run: string }>;

/**
 * Refuses a new ladder the way the ingress refuses a new notification
 * (draining, the broker blocking publishes, the merchant disabled or
 * unknown); throws a coded error. Runs before the claim.
 */
export type AdmitLadder = (n: Notification) => Promise<void>;

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
  /**
   * Set when the recover stopped before the end of the window (the broker or
   * the database failed): why, and the first notification not resent. What
   * was resent stays resent; running the recover again resends only what is
   * still dead (each resend claims its notification first).
   */
  readonly stopped: { readonly error: ErrorData; readonly at: string | null } | null;
}

/** Statuses a resend may claim: anything not under way, or anything when forced. */
const RESENDABLE_FROM: readonly HistoryStatus[] = ['delivered', 'dead'];
const FORCED_FROM: readonly HistoryStatus[] = ['pending', 'delivered', 'dead'];
/** A recover claims only what is still dead (a re-run, or a resend meanwhile, leaves the rest alone). */
const RECOVER_FROM: readonly HistoryStatus[] = ['dead'];

/** Dead notifications read per query of a recover. */
const RECOVER_PAGE = 200;
/** Resends of a recover waiting for the broker's confirm at once. */
const RECOVER_PARALLEL = 16;
/** Failures listed in a recover's answer (the count is complete). */
const RECOVER_REPORT_MAX = 100;

export class HistoryService {
  constructor(
    private readonly reader: HistoryReader,
    private readonly claims: HistoryClaims,
    private readonly startLadder: StartLadder,
    /** The limits the resent notification is validated with, as a tier would (read per call: a reload applies). */
    private readonly limits: () => LimitsConfig,
    private readonly admit: AdmitLadder = async () => undefined,
  ) {}

  /** A notification's timeline; `NOT_FOUND` when the history does not know it. */
  async get(id: string): Promise<NotificationTimeline> {
    // An id with a NUL, which PostgreSQL refuses in text (a 500), is no notification's: not asked for.
    const t = id.includes('\u0000') ? null : await this.reader.get(id);
    if (!t) throw new NotifyError(ErrorCodes.NOT_FOUND, `no notification ${id} in the history (older than the retention, or never accepted)`);
    return t;
  }

  list(filter: ListFilter): Promise<NotificationPage> {
    return this.reader.list(filter);
  }

  /**
   * Sends a notification again from tier 0 with the same id. One still
   * pending is refused (`NOTIFICATION_PENDING`: it would reach the merchant
   * twice at once) unless `force`. The refusal is decided by a claim in the
   * database, so two resends at once (or a client retrying one) start one
   * ladder, not two.
   */
  async resend(id: string, force: boolean, producer: string | null): Promise<ResendResult> {
    const s = id.includes('\u0000') ? null : await this.reader.stored(id);
    if (!s) throw new NotifyError(ErrorCodes.NOT_FOUND, `no notification ${id} in the history`);
    if (s.view.status === 'pending' && !force) throw pending(id);
    const n = this.resendable(id, s.content);
    await this.admit(n);
    const at = Date.now();
    const claim = await this.claims.claim(id, s.key, at, force ? FORCED_FROM : RESENDABLE_FROM);
    if (!claim) throw pending(id);
    const { run } = await this.ladder(n, claim, 'resend', producer);
    return { id, run, previousStatus: claim.previousStatus };
  }

  /**
   * Sends again every dead notification of `merchant` created in the window
   * (Svix's recover), in pages, oldest first. Each is claimed first (only
   * while still dead), so running a recover again, or two at once, resends
   * each dead notification once. One that cannot be resent (not resendable,
   * its merchant disabled) is reported and skipped; a broker or database
   * failure stops the recover and the answer says where (`stopped.at`: the
   * first notification it could not resend, null when a page read failed).
   */
  async recover(r: RecoverRequest, producer: string | null): Promise<RecoverResult> {
    let matched = 0;
    let resent = 0;
    const failed: { id: string; error: ErrorData }[] = [];
    const fail = (id: string, err: unknown): void => {
      if (failed.length < RECOVER_REPORT_MAX) failed.push({ id, error: toErrorData(err) });
    };
    let after: ListCursor | null = null;
    for (;;) {
      let page: Awaited<ReturnType<HistoryReader['deadOfMerchant']>>;
      try {
        page = await this.reader.deadOfMerchant(r.merchant, r.since, r.until, after, RECOVER_PAGE);
      } catch (err) {
        // Nothing resent yet: the plain error (a 503) says it all.
        if (matched === 0) throw err;
        return { merchant: r.merchant, since: r.since, until: r.until, matched, resent, failed, stopped: { error: historyErrorData(err), at: null } };
      }
      // A few publishes wait for their confirm at once: one at a time, a recover of thousands would take minutes.
      for (let i = 0; i < page.length; i += RECOVER_PARALLEL) {
        const slice = page.slice(i, i + RECOVER_PARALLEL);
        matched += slice.length;
        const outcomes = await Promise.allSettled(slice.map((d) => this.recoverOne(d.id, d.key.at, d.content, producer)));
        let stop: { error: ErrorData; at: string | null } | null = null;
        outcomes.forEach((o, j) => {
          const id = slice[j]!.id;
          if (o.status === 'fulfilled') {
            if (o.value) resent++;
          } else if (refusal(o.reason)) {
            fail(id, o.reason);
          } else {
            stop ??= { error: historyErrorData(o.reason), at: id };
          }
        });
        if (stop) {
          matched += page.length - i - slice.length;
          return { merchant: r.merchant, since: r.since, until: r.until, matched, resent, failed, stopped: stop };
        }
      }
      if (page.length < RECOVER_PAGE) break;
      after = page[page.length - 1]!.key;
    }
    return { merchant: r.merchant, since: r.since, until: r.until, matched, resent, failed, stopped: null };
  }

  /** One notification of a recover: false when it was no longer dead (resent meanwhile). */
  private async recoverOne(id: string, key: string, content: string | null, producer: string | null): Promise<boolean> {
    const n = this.resendable(id, content);
    await this.admit(n);
    const claim = await this.claims.claim(id, key, Date.now(), RECOVER_FROM);
    if (!claim) return false;
    await this.ladder(n, claim, 'recover', producer);
    return true;
  }

  /**
   * Starts the claimed ladder; when the broker surely did not take it, the
   * claim is given back (best effort) so a retry can claim it. After a
   * confirm that never came (`BROKER_CONFIRM_TIMEOUT`) the ladder may be
   * running: the claim stays (pending, held for a day as a redrive's is),
   * so a second resend or a redrive of its parked copy does not send it twice.
   */
  private async ladder(n: Notification, claim: Claim, via: 'resend' | 'recover', producer: string | null): Promise<{ run: string }> {
    try {
      return await this.startLadder(n, via, producer, claim.at);
    } catch (err) {
      // If this fails too the notification stays pending until a forced resend; the publish error is what the caller needs.
      if (!hasCode(err, ErrorCodes.BROKER_CONFIRM_TIMEOUT)) await this.claims.release(claim).catch(() => undefined);
      throw err;
    }
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

function pending(id: string): NotifyError {
  return new NotifyError(ErrorCodes.NOTIFICATION_PENDING, `notification ${id} is still pending (its ladder is under way); resend with force=true to send it again anyway`);
}

/** A refusal of one notification (a 4xx: not resendable, merchant disabled), reported; anything else stops a recover. */
function refusal(err: unknown): boolean {
  return statusForError(toErrorData(err).code) < 500;
}
