import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, GetMessage } from 'amqplib';
import { confirmedWithin, handOnOptions, publishConfirmed, type ReturnTracker } from './confirm.js';
import type { Config } from '../core/config.js';
import { ErrorCodes } from '../core/errors.js';
import { H } from '../core/message.js';
import { namesFor, routeForAttempt } from './topology.js';
import { newRunId } from '../history/records.js';
import type { CopyVerdict, RedriveBatch } from '../history/superseded.js';

/** Reasons that would fail again the same way; redriven only when forced. */
const STICKY_REASONS = new Set(['blocked', 'invalid']);
/** Publish failures that say the broker did not take the message (anything else may have been taken). */
const REFUSED = new Set<string>([ErrorCodes.BROKER_NACK, ErrorCodes.INTERNAL]);
/** Most sticky messages stepped over in one scan. */
const MAX_SKIPPED = 100_000;
/** Marks a message with the scan (a redrive or a listing) that put it back at the tail. */
export const SCAN_HEADER = 'notify-redrive-scan';

export interface RedriveResult {
  readonly moved: number;
  readonly skipped: number;
  /** Dropped: copies of notifications resent or recovered after they were parked (history on only). */
  readonly superseded: number;
  readonly remaining: number;
}

/** Parked copies read before the history is asked which are superseded (one query per batch). */
const BATCH = 50;

/**
 * Moves up to `limit` parked notifications from `P.dead` back to tier 0
 * (`stuck` adds reasons of the moment to the sticky ones, e.g. a merchant
 * still disabled),
 * keeping their history headers (first attempt, last error) and counting the
 * redrive. Each move is publish → confirm → ack. A skipped (sticky) one is put
 * back at the tail of `P.dead` the same way, marked with this scan's id, rather
 * than requeued: a requeue counts as a redelivery, and quorum queues on
 * RabbitMQ 4 drop a message after 20 of those. It reads at most what was
 * parked when it started; meeting a message marked with this scan means the
 * queue has been gone round once (someone else took messages), so it stops.
 * Copies are read in batches so the history is asked once per batch; its
 * transaction is opened before a batch is taken, so a history that cannot
 * be reached fails the redrive with nothing given back (each requeue counts
 * towards a quorum queue's delivery limit).
 */
export async function redrive(
  ch: ConfirmChannel,
  config: Config,
  limit: number,
  force: boolean,
  opts: {
    returns?: ReturnTracker;
    /** How long each move or put-back waits for its confirm (0 or absent: for ever); past it the redrive fails and gives the rest back. */
    confirmTimeoutMs?: number;
    /** Which parked ones would only be parked again (a merchant still disabled). */
    stuck?: (reason: string, content: Buffer) => boolean;
    /** Records each moved notification's new ladder in the history (never throws); absent without history. */
    recordRun?: (content: Buffer, run: string, at: number) => Promise<void>;
    /**
     * Opens the history's part in one batch (absent without history: every
     * copy is moved); it says what the history knows of each copy and
     * claims the moved ones. `drop`: resent after it was parked; acked,
     * counted `superseded`, even when forced, since moving it would deliver
     * it twice. `hold`: a resend's claim with no ladder recorded yet; kept
     * parked like a sticky one, even when forced, counted `skipped`. A
     * failure fails the redrive (a batch already taken is given back).
     */
    history?: () => Promise<RedriveBatch>;
    /** Told each dropped copy (for the log). */
    onSuperseded?: (messageId: string, reason: string) => void;
  } = {},
): Promise<RedriveResult> {
  const { returns, stuck, recordRun, history, onSuperseded, confirmTimeoutMs = 0 } = opts;
  const names = namesFor(config.prefix);
  const route = routeForAttempt(names, config.scheduleMs, 0);
  const scanId = randomUUID();
  let moved = 0;
  let skipped = 0;
  let superseded = 0;
  // Only what is parked when the scan starts: a notification it moves that fails again at once (a 410, say)
  // is parked again behind the others and must not be moved again by the same redrive.
  let left = (await ch.checkQueue(names.dead)).messageCount;
  let done = false;
  while (!done && moved < limit && skipped < MAX_SKIPPED && left > 0) {
    // A batch at most as large as what may still be moved, so the limit is never passed.
    const want = Math.min(BATCH, limit - moved, left);
    const h = await history?.();
    const batch: GetMessage[] = [];
    while (batch.length < want) {
      const msg = await ch.get(names.dead, { noAck: false });
      if (!msg) {
        done = true;
        break;
      }
      left--;
      if ((msg.properties.headers ?? {})[SCAN_HEADER] === scanId) {
        ch.nack(msg, false, true);
        done = true;
        break;
      }
      batch.push(msg);
    }
    // One start for the batch's new ladders: the history's claims are made as of it.
    const at = Date.now();
    // Sticky ones stay parked whatever the history says: only the others may be claimed.
    const stays = batch.map((m) => {
      const reason = String((m.properties.headers ?? {})[H.deadReason] ?? '');
      return !force && (STICKY_REASONS.has(reason) || (stuck?.(reason, m.content) ?? false));
    });
    // Where the batch stands if something fails: copies from `i` on are not acked, claims from `from` on are of
    // copies surely not moved.
    let i = 0;
    let from = 0;
    try {
      let verdicts: readonly CopyVerdict[] = [];
      if (h && batch.length > 0) verdicts = await h.decide(batch.map((m, j) => ({ content: m.content, headers: m.properties.headers ?? {}, moves: !stays[j] })), at);
      for (; i < batch.length; i++) {
        from = i;
        const msg = batch[i]!;
        const old = msg.properties.headers ?? {};
        const reason = String(old[H.deadReason] ?? '');
        if (verdicts[i] === 'drop') {
          ch.ack(msg);
          superseded++;
          onSuperseded?.(String(msg.properties.messageId ?? ''), reason);
          continue;
        }
        const sticky = verdicts[i] === 'hold' || stays[i]!;
        if (sticky) {
          await confirmedWithin(confirmTimeoutMs, publishConfirmed(ch, '', names.dead, msg.content, handOnOptions(msg, { [SCAN_HEADER]: scanId }), returns));
        } else {
          const run = newRunId(at);
          const set: Record<string, unknown> = {
            [H.attempt]: 0,
            [H.dueAt]: at + (config.scheduleMs[0] ?? 0),
            [H.redriven]: Number(old[H.redriven] ?? 0) + 1,
            'notify-redriven-from': reason,
            [H.run]: run,
          };
          // Without a history, a ladder no one recorded: tier 0 records it if history is turned on meanwhile.
          // A new ladder waits afresh: a budget spent on its last tier must not be charged to tier 0. And its
          // last parking is history: a copy the broker parks later (no notifyd headers set) must not be listed with it.
          const drop = [H.deadReason, SCAN_HEADER, H.waitingSince, H.deadAt, H.deadTier, H.deadAttempts, ...(recordRun ? [] : [H.recorded])];
          if (recordRun) set[H.recorded] = 1;
          try {
            await confirmedWithin(confirmTimeoutMs, publishConfirmed(ch, route.exchange, route.routingKey, msg.content, handOnOptions(msg, set, drop), returns));
          } catch (err) {
            // A lost confirm or a closed channel may still have delivered it: its claim stays, so its copy (given
            // back below) is held by a later redrive rather than moved twice. Only a refusal is surely not moved.
            if (!REFUSED.has(String((err as { code?: unknown }).code))) from = i + 1;
            throw err;
          }
          from = i + 1;
          await recordRun?.(msg.content, run, at);
        }
        ch.ack(msg);
        if (sticky) skipped++;
        else moved++;
      }
    } catch (err) {
      // Not moved: their claims go back first (a resend may take them again), then the copies, rather than leave
      // them unacked (invisible) on a long-lived channel. A closed channel refuses the nack and gives them back itself.
      await h?.giveBack(from);
      for (const m of batch.slice(i)) {
        try {
          ch.nack(m, false, true);
        } catch {
          break;
        }
      }
      throw err;
    }
  }
  const after = await ch.checkQueue(names.dead);
  return { moved, skipped, superseded, remaining: after.messageCount };
}
