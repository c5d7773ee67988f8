import type { ConsumeMessage, Options } from 'amqplib';
import { decodeBundle } from '../broker/bundle.js';
import type { ChannelLink } from './channel-link.js';

/** How a tier opens a bundle. */
export interface BundleHandling {
  /** The pipeline: handles one entry as the message it stands for. */
  readonly handle: (link: ChannelLink, msg: ConsumeMessage) => Promise<void>;
  /** The tier's own work queue, where an entry goes back alone. */
  readonly backTo: { readonly exchange: string; readonly routingKey: string };
  /**
   * Waited before a whole bundle goes back to its queue (an entry could not
   * be given back): it comes straight back, and a lasting refusal must not be
   * a hot loop.
   */
  readonly pause: () => Promise<void>;
}

/** Publish options of an entry given back alone: its own id and headers. */
function alone(m: ConsumeMessage): Options.Publish {
  const p = m.properties;
  return { messageId: p.messageId, contentType: p.contentType, timestamp: p.timestamp, headers: p.headers, persistent: true, mandatory: true };
}

/**
 * Handles a delivered bundle (src/broker/bundle.ts): every entry goes through
 * the pipeline as the message it stands for, on a link whose acks only count
 * and whose requeues publish the entry back to the tier's queue alone. The
 * bundle is acked once every entry is done; if any entry could not be
 * finished or given back, the whole bundle goes back instead, so an entry is
 * handled twice rather than lost (at least once, as after a crash before an
 * ack). A redelivered bundle (its worker or channel went while it was open)
 * is not handled again as a whole: its entries go back to the queue alone,
 * so a bundle that keeps failing can never reach the broker's delivery limit
 * and be parked whole. An unreadable bundle goes to the pipeline as it came,
 * which parks it `invalid`.
 */
export async function handleBundle(link: ChannelLink, msg: ConsumeMessage, h: BundleHandling): Promise<void> {
  let entries: ConsumeMessage[];
  try {
    entries = decodeBundle(msg);
  } catch {
    return h.handle(link, msg);
  }
  const giveBack = (m: ConsumeMessage): Promise<boolean> =>
    link.publish(h.backTo.exchange, h.backTo.routingKey, m.content, alone(m)).then(
      () => true,
      () => false,
    );
  if (msg.fields.redelivered) {
    const back = await Promise.all(entries.map(giveBack));
    if (back.every((x) => x)) link.ack(msg);
    else if (!link.closed) {
      await h.pause();
      link.requeue(msg);
    }
    return;
  }
  const settled = new Set<ConsumeMessage>();
  let lost = false;
  const givingBack: Promise<void>[] = [];
  const sub: ChannelLink = {
    publish: (exchange, routingKey, content, options, trackReturns) => link.publish(exchange, routingKey, content, options, trackReturns),
    ack: (m) => {
      settled.add(m);
    },
    requeue: (m) => {
      settled.add(m);
      givingBack.push(
        giveBack(m).then((ok) => {
          if (!ok) lost = true;
        }),
      );
    },
    get closed() {
      return link.closed;
    },
    root: link.root ?? link,
  };
  await Promise.all(entries.map((e) => h.handle(sub, e)));
  await Promise.all(givingBack);
  // An entry neither acked nor given back was left to the broker's redelivery (its channel went): so is the bundle.
  if (!lost && entries.every((e) => settled.has(e))) {
    link.ack(msg);
    return;
  }
  if (link.closed) return;
  await h.pause();
  link.requeue(msg);
}
