import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, GetMessage } from 'amqplib';
import type { Config } from '../core/config.js';
import { H } from '../core/message.js';
import { confirmedWithin, handOnOptions, publishConfirmed, type ReturnTracker } from './confirm.js';
import { SCAN_HEADER } from './dead-letters.js';
import { countByMerchant, countByReason, parkedReason, summariseParked, type DeadListing, type ParkedSummary } from './dead-summary.js';
import { namesFor } from './topology.js';
import { CLOSE_WITHIN_MS } from './connection.js';
import { closeChannelWithin } from './open-within.js';

/** Messages read before their copies are published together (bounds memory to this many bodies). */
const BATCH = 50;

/**
 * Lists up to `limit` parked notifications from the head of `P.dead` without
 * consuming them. There is no way to read a queue in place, so each message
 * is read (get), published unchanged to the tail of `P.dead` with a confirm,
 * and only then acked, as redrive does with the ones it steps over. Never a
 * nack or requeue: a requeue counts as a redelivery, and on RabbitMQ 4 a
 * quorum queue drops a message after 20 of those. At most `limit` and at most
 * the count at the start are read, so a listing never reads its own copies.
 *
 * Order: a listing that covers the whole queue leaves it in the order it
 * found it; a shorter one moves the listed messages from the head to the tail
 * (the queue turns by `limit`), so successive listings page through it.
 * Notifications parked meanwhile land between the copies.
 *
 * What the copy cannot keep: the broker's `x-` headers (they belong to it);
 * for a message the broker dead-lettered itself, its reason and time are
 * written into `notify-dead-reason` / `notify-dead-at` first.
 *
 * `ch` must be a long-lived channel (the master's): a quorum queue settles
 * acks asynchronously, and closing the channel right after them can give
 * back messages already acked, which would park them twice. For the same
 * reason a failed copy is not nacked: `giveBack` closes the channel instead
 * (by default; the master drops its whole connection, which does the same
 * without waiting for a close-ok a stalled broker would never send, and
 * reconnects), which gives the originals back; a copy the broker did
 * confirm may then be parked twice, never lost.
 */
export async function listDead(
  ch: ConfirmChannel,
  config: Config,
  limit: number,
  returns?: ReturnTracker,
  giveBack: () => Promise<void> = () => closeChannelWithin(ch, CLOSE_WITHIN_MS),
  /** How long each copy waits for its confirm (0: for ever); past it the listing fails and gives the originals back. */
  confirmTimeoutMs = 0,
): Promise<DeadListing> {
  const dead = namesFor(config.prefix).dead;
  const scanId = randomUUID();
  const listed: ParkedSummary[] = [];
  const want = Math.min(limit, (await ch.checkQueue(dead)).messageCount);
  let lapped = false;
  while (listed.length < want && !lapped) {
    const batch: GetMessage[] = [];
    while (batch.length < Math.min(BATCH, want - listed.length)) {
      const msg = await ch.get(dead, { noAck: false });
      if (!msg) break;
      batch.push(msg);
      // Our own copy: someone else (another daemon) took messages meanwhile and we went round. Put it back too, then stop.
      if (msg.properties.headers?.[SCAN_HEADER] === scanId) {
        lapped = true;
        break;
      }
    }
    if (batch.length === 0) break;
    // async: anything the copy's making throws is a failed copy too, and the batch is given back.
    const copies = await Promise.allSettled(batch.map(async (m) => confirmedWithin(confirmTimeoutMs, publishConfirmed(ch, '', dead, m.content, handOnOptions(m, keep(m, scanId)), returns))));
    const failed = copies.find((c): c is PromiseRejectedResult => c.status === 'rejected');
    if (failed) {
      await giveBack();
      throw failed.reason;
    }
    for (const m of batch) ch.ack(m);
    for (const m of batch) if (m.properties.headers?.[SCAN_HEADER] !== scanId) listed.push(summariseParked(m.properties, m.content));
  }
  const total = (await ch.checkQueue(dead)).messageCount;
  return { total, byReason: countByReason(listed), byMerchant: countByMerchant(listed), messages: listed };
}

/** Headers to set on the copy: this scan's mark, and what only the broker's `x-death` said. */
function keep(m: GetMessage, scanId: string): Record<string, unknown> {
  const headers = m.properties.headers ?? {};
  const set: Record<string, unknown> = { [SCAN_HEADER]: scanId };
  const reason = parkedReason(headers);
  if (headers[H.deadReason] === undefined && reason.startsWith('broker-')) {
    set[H.deadReason] = reason;
    const at = summariseParked(m.properties, Buffer.alloc(0)).deadAt;
    if (headers[H.deadAt] === undefined && at !== null) set[H.deadAt] = at;
  }
  return set;
}
