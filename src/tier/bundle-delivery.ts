import type { ConsumeMessage } from 'amqplib';
import { decodeBundle } from '../broker/bundle.js';
import { handOnOptions } from '../broker/confirm.js';
import { reconnectDelay, sleep } from '../broker/connection.js';
import type { ChannelLink } from './channel-link.js';

/**
 * A bundle delivered this many times is split instead of handled again as a
 * whole (quorum queues count deliveries in `x-delivery-count`): one that
 * keeps failing never reaches the broker's delivery limit and is parked
 * whole, and a single channel loss (a failover) does not turn every open
 * bundle into single messages.
 */
const SPLIT_AFTER_DELIVERIES = 2;

/** How a tier opens a bundle. */
export interface BundleHandling {
  /** The pipeline: handles one entry as the message it stands for. */
  readonly handle: (link: ChannelLink, msg: ConsumeMessage) => Promise<void>;
  /** The tier's own work queue, where an entry goes back alone. */
  readonly backTo: { readonly exchange: string; readonly routingKey: string };
  /** Aborted when the worker stops: a give-back the broker refuses is then retried no more. */
  readonly stopSignal: AbortSignal;
  /** Told of each give-back the broker did not take (it is retried with backoff). */
  readonly onRefused?: (err: unknown, tries: number) => void;
}

/**
 * Pure: how many times the broker says it has delivered this message before
 * (quorum queues only). The larger of two headers: from RabbitMQ 4.3 a
 * requeue no longer raises `x-delivery-count`, and `x-acquired-count`
 * counts every time the message was handed out.
 */
function earlierDeliveries(msg: ConsumeMessage): number {
  const count = (h: string): number => {
    const n = msg.properties.headers?.[h];
    return typeof n === 'number' ? n : 0;
  };
  return Math.max(count('x-delivery-count'), count('x-acquired-count'));
}

/**
 * Handles a delivered bundle (src/broker/bundle.ts): every entry goes through
 * the pipeline as the message it stands for, on a link whose acks only count
 * and whose requeues publish the entry back to the tier's work queue alone
 * (retried with backoff while the broker refuses). The bundle is acked once
 * every entry is acked or given back; if its channel goes first, the broker
 * redelivers the whole bundle, so an entry is handled twice rather than lost
 * (at least once, as after a crash before an ack). Only when the worker
 * stops with a give-back still refused does the bundle go back whole. A
 * bundle already delivered `SPLIT_AFTER_DELIVERIES` times is not handled
 * again: its entries go back alone. An unreadable bundle goes to the
 * pipeline as it came, which parks it `invalid`.
 */
export async function handleBundle(link: ChannelLink, msg: ConsumeMessage, h: BundleHandling): Promise<void> {
  let entries: ConsumeMessage[];
  try {
    entries = decodeBundle(msg);
  } catch {
    return h.handle(link, msg);
  }
  const giveBack = async (m: ConsumeMessage): Promise<boolean> => {
    for (let tries = 0; ; tries++) {
      try {
        await Promise.resolve().then(() => link.publish(h.backTo.exchange, h.backTo.routingKey, m.content, handOnOptions(m, {})));
        return true;
      } catch (err) {
        if (link.closed || h.stopSignal.aborted) return false;
        h.onRefused?.(err, tries + 1);
        await sleep(reconnectDelay(tries, 100, 5000), h.stopSignal);
      }
    }
  };
  const finish = (allBack: boolean): void => {
    if (allBack) link.ack(msg);
    // Given back whole only when the worker stops with a give-back refused; a closed channel's delivery is the broker's.
    else if (!link.closed) link.requeue(msg);
  };
  if (earlierDeliveries(msg) >= SPLIT_AFTER_DELIVERIES) {
    finish((await Promise.all(entries.map(giveBack))).every((x) => x));
    return;
  }
  const settled = new Set<ConsumeMessage>();
  const givingBack: Promise<boolean>[] = [];
  const sub: ChannelLink = {
    publish: (exchange, routingKey, content, options, trackReturns) => link.publish(exchange, routingKey, content, options, trackReturns),
    ack: (m) => {
      settled.add(m);
    },
    requeue: (m) => {
      settled.add(m);
      givingBack.push(giveBack(m));
    },
    get closed() {
      return link.closed;
    },
    root: link.root ?? link,
  };
  await Promise.all(entries.map((e) => h.handle(sub, e)));
  const back = await Promise.all(givingBack);
  // An entry neither acked nor given back was left to the broker's redelivery (its channel went): so is the bundle.
  finish(back.every((x) => x) && entries.every((e) => settled.has(e)));
}
