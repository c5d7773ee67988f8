import type { ConsumeMessage, Options } from 'amqplib';

/**
 * What the attempt pipeline may do on the channel a message arrived on. A
 * delivery tag belongs to its channel, so every ack and requeue goes through
 * the link of that channel; once the channel is gone they are no-ops (the
 * broker has requeued the message already).
 */
export interface ChannelLink {
  /**
   * Publishes and resolves on the broker's confirm. A `mandatory` publish
   * that the broker returns fails, unless `trackReturns` is false (the
   * caller handles returns itself).
   */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish, trackReturns?: boolean): Promise<void>;
  /** Acks the message (batched with others). */
  ack(msg: ConsumeMessage): void;
  /** Gives the message back to its queue now. */
  requeue(msg: ConsumeMessage): void;
  /** The channel is gone (closed or replaced): its messages are the broker's to redeliver. */
  readonly closed: boolean;
  /**
   * The link of the channel this one publishes on, when this one stands for
   * part of a delivery (a bundle's entry): hand-ons from every entry of one
   * channel share bundles. Absent: this link is its channel's own.
   */
  readonly root?: ChannelLink;
}
