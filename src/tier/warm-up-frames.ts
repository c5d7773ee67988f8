import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ConsumeMessage, Options } from 'amqplib';

/**
 * Why this exists (issue 18): the warm-up (src/tier/warm-up.ts) handed its
 * synthetic deliveries to the pipeline as ready-made objects, so amqplib's
 * own decoding of a delivery stayed cold. A retry tier's deliveries carry
 * what the broker adds on dead-lettering (`x-death`, an array of tables),
 * and decoding it was the largest cold part of amqplib left in tier 1's
 * first 300 ms of a burst: 13 of 23–29 ms, in validation code V8 had not
 * optimised yet (docs/performance.md, stop 32). So each synthetic delivery
 * goes through the frames the broker would send (method, content header,
 * body), encoded and decoded by amqplib's codec, and each hand-on and ack is
 * encoded as the channel encodes them (nothing is sent).
 *
 * amqplib does not export its codec (its package.json `exports`), so the
 * files are reached beside its entry point. If a later amqplib moves or
 * changes them, the warm-up goes on without frames (`WarmUpFrames` turns
 * itself off at the first error) and reports how many deliveries it
 * decoded; a unit test fails with the pinned version.
 */

/** The parts of amqplib's lib/defs.js, lib/frame.js and lib/api_args.js used here. */
export interface Codec {
  readonly defs: {
    encodeMethod(id: number, channel: number, fields: Record<string, unknown>): Buffer;
    encodeProperties(id: number, channel: number, size: number, fields: Record<string, unknown>): Buffer;
    readonly BasicDeliver: number;
    readonly BasicPublish: number;
    readonly BasicAck: number;
    readonly BasicProperties: number;
  };
  readonly frame: {
    makeBodyFrame(channel: number, payload: Buffer): Buffer;
    parseFrame(bin: Buffer, max: number): { type: number; channel: number; size: number; payload: Buffer; rest: Buffer } | false | null;
    decodeFrame(f: { type: number; channel: number; size: number; payload: Buffer }): { id?: number; fields?: Record<string, unknown>; content?: Buffer };
  };
  readonly args: {
    publish(exchange: string, routingKey: string, options: Options.Publish): Record<string, unknown>;
    ack(tag: number, allUpTo: boolean): Record<string, unknown>;
  };
}

let cached: Codec | null | undefined;

/** amqplib's codec, or null when this amqplib does not have it where expected. */
export function loadCodec(): Codec | null {
  if (cached !== undefined) return cached;
  try {
    const require = createRequire(import.meta.url);
    const lib = join(dirname(require.resolve('amqplib')), 'lib');
    const defs = require(join(lib, 'defs.js')) as Codec['defs'];
    const frame = require(join(lib, 'frame.js')) as Codec['frame'];
    const args = require(join(lib, 'api_args.js')) as Codec['args'];
    const fns = [defs.encodeMethod, defs.encodeProperties, frame.makeBodyFrame, frame.parseFrame, frame.decodeFrame, args.publish, args.ack];
    const ids = [defs.BasicDeliver, defs.BasicPublish, defs.BasicAck, defs.BasicProperties];
    cached = fns.every((f) => typeof f === 'function') && ids.every(Number.isInteger) ? { defs, frame, args } : null;
  } catch {
    cached = null;
  }
  return cached;
}

/**
 * The headers the broker adds to a message dead-lettered from `queue` when
 * its TTL ran out (RabbitMQ 3.10). A hand-on drops the `x-` headers it got
 * (src/broker/confirm.ts), so a retry tier's delivery has one `x-death`
 * table, for the wait queue it came from; `count` travels as a long. A
 * message published with an `expiration` of its own (a hand-on whose attempt
 * took part of its delay: src/core/schedule.ts retryTiming) also has that
 * expiration in the table, last, as `original-expiration`, whichever TTL
 * fired: another shape of object for the code that decodes and reads it.
 */
export function deathHeaders(queue: string, nowSec: number, originalExpiration?: string): Record<string, unknown> {
  const death: Record<string, unknown> = { count: { '!': 'long', value: 1 }, reason: 'expired', queue, time: { '!': 'timestamp', value: nowSec }, exchange: '', 'routing-keys': [queue] };
  if (originalExpiration !== undefined) death['original-expiration'] = originalExpiration;
  return {
    'x-death': [death],
    'x-first-death-exchange': '',
    'x-first-death-queue': queue,
    'x-first-death-reason': 'expired',
  };
}

/** The frames in `bytes`, decoded as the connection decodes what it reads (our own frames: no size limit to check). */
export function decodeFrames(c: Codec, bytes: Buffer): { id?: number; fields?: Record<string, unknown>; content?: Buffer }[] {
  const out = [];
  let rest: Buffer = bytes;
  for (;;) {
    const f = c.frame.parseFrame(rest, 0);
    if (!f) return out;
    out.push(c.frame.decodeFrame(f));
    rest = f.rest;
  }
}

/** A method with content on channel 1: method, content header and body frames, as amqplib's connection writes them. */
function encodeMessage(c: Codec, method: number, fields: Record<string, unknown>, properties: Record<string, unknown>, content: Buffer): Buffer {
  return Buffer.concat([c.defs.encodeMethod(method, 1, fields), c.defs.encodeProperties(c.defs.BasicProperties, 1, content.length, properties), c.frame.makeBodyFrame(1, content)]);
}

/** `msg` as the three frames of a delivery (what the broker sends). */
export function encodeDelivery(c: Codec, msg: ConsumeMessage): Buffer {
  return encodeMessage(c, c.defs.BasicDeliver, { ...msg.fields }, { ...msg.properties }, msg.content);
}

/** A publish as amqplib's channel encodes it: its options turned into fields and properties first. */
export function encodePublish(c: Codec, exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Buffer {
  const fieldsAndProps = c.args.publish(exchange, routingKey, options);
  return encodeMessage(c, c.defs.BasicPublish, fieldsAndProps, fieldsAndProps, content);
}

/** An ack as amqplib's channel encodes it. */
export function encodeAck(c: Codec, deliveryTag: number, allUpTo = false): Buffer {
  return c.defs.encodeMethod(c.defs.BasicAck, 1, c.args.ack(deliveryTag, allUpTo));
}

/**
 * The warm-up's use of the codec, which never throws: the first error turns
 * it off (the warm-up then goes on as before, only without warming amqplib).
 */
export class WarmUpFrames {
  /** Deliveries decoded from frames so far. */
  decoded = 0;
  private codec: Codec | null;

  constructor(codec: Codec | null = loadCodec()) {
    this.codec = codec;
  }

  /** `msg` decoded from its frames, or `msg` itself once the codec is off. */
  delivery(msg: ConsumeMessage): ConsumeMessage {
    const c = this.codec;
    if (c === null) return msg;
    try {
      const [method, header, body] = decodeFrames(c, encodeDelivery(c, msg));
      if (method?.fields && header?.fields && body?.content) {
        this.decoded++;
        return { fields: method.fields as unknown as ConsumeMessage['fields'], properties: header.fields as unknown as ConsumeMessage['properties'], content: body.content as ConsumeMessage['content'] };
      }
    } catch {
      // Off below, as for frames that did not come back whole.
    }
    this.codec = null;
    return msg;
  }

  /** Encodes a hand-on publish and drops it. */
  publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): void {
    this.use((c) => encodePublish(c, exchange, routingKey, content, options));
  }

  /** Encodes an ack and drops it. */
  ack(deliveryTag: number): void {
    this.use((c) => encodeAck(c, deliveryTag));
  }

  private use(encode: (c: Codec) => Buffer): void {
    if (this.codec === null) return;
    try {
      encode(this.codec);
    } catch {
      this.codec = null;
    }
  }
}
