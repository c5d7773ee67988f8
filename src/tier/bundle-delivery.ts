import type { ConsumeMessage } from 'amqplib';
import { decodeBundle } from '../broker/bundle.js';
import type { ChannelLink } from './channel-link.js';

/**
 * Handles a delivered bundle (src/broker/bundle.ts): every entry goes through
 * `handle` as the message it stands for, on a link whose acks only count and
 * whose requeues publish the entry back to the tier's own queue. The bundle
 * is acked once every entry is done; if any entry could not be finished or
 * given back, the whole bundle goes back instead, so an entry is attempted
 * twice rather than lost (at least once, as a crash before an ack would).
 * An unreadable bundle goes to `handle` as it came, which parks it `invalid`.
 */
export async function handleBundle(
  link: ChannelLink,
  msg: ConsumeMessage,
  handle: (link: ChannelLink, msg: ConsumeMessage) => Promise<void>,
  backTo: { readonly exchange: string; readonly routingKey: string },
): Promise<void> {
  let entries: ConsumeMessage[];
  try {
    entries = decodeBundle(msg);
  } catch {
    return handle(link, msg);
  }
  let done = 0;
  let lost = false;
  const givingBack: Promise<void>[] = [];
  const sub: ChannelLink = {
    publish: (exchange, routingKey, content, options, trackReturns) => link.publish(exchange, routingKey, content, options, trackReturns),
    ack: () => {
      done++;
    },
    requeue: (m) => {
      done++;
      const p = m.properties;
      givingBack.push(
        link
          .publish(backTo.exchange, backTo.routingKey, m.content, { messageId: p.messageId, contentType: p.contentType, timestamp: p.timestamp, headers: p.headers, persistent: true, mandatory: true })
          .catch(() => {
            lost = true;
          }),
      );
    },
    get closed() {
      return link.closed;
    },
  };
  await Promise.all(entries.map((e) => handle(sub, e)));
  await Promise.all(givingBack);
  // An entry neither acked nor given back was left to the broker's redelivery (its channel went): so is the bundle.
  if (lost || done < entries.length) link.requeue(msg);
  else link.ack(msg);
}
