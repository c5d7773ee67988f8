import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ConsumeMessage, Options } from 'amqplib';

/**
 * Why this exists (issue 18): the warm-up (src/tier/warm-up.ts) handed its
 * synthetic deliveries to the pipeline as ready-made objects, so amqplib's
 * own decoding of a delivery stayed cold. A retry tier's deliveries carry
 * what the broker adds on dead-lettering (`x-death`, an array of tables, one
 * per wait queue passed), and decoding those was the largest cold part left
 * in tier 1's first 300 ms of a burst: 13 of 23–29 ms of amqplib, in
 * validation code V8 had not optimised yet (docs/performance.md, stop 32).
 * So each synthetic delivery goes through the frames the broker would send
 * (method, content header, body), encoded and decoded by amqplib's codec,
 * and each hand-on and ack is encoded as the channel would.
 *
 * amqplib does not export its codec (its package.json `exports`), so the
 * files are reached beside its entry point. If a later amqplib moves them,
 * `loadCodec` returns null and the warm-up goes on without frames (a test
 * asserts they load with the pinned version).
 */

/** The parts of amqplib's lib/defs.js and lib/frame.js used here. */
interface Codec {
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
    parseFrame(bin: Buffer, max: number): { type: number; channel: number; size: number; payload: Buffer; rest: Buffer } | false;
    decodeFrame(f: { type: number; channel: number; size: number; payload: Buffer }): { fields?: Record<string, unknown>; content?: Buffer };
  };
}

let codec: Codec | null | undefined;

/** amqplib's codec, or null when this amqplib does not have it where expected. */
export function loadCodec(): Codec | null {
  if (codec !== undefined) return codec;
  try {
    const require = createRequire(import.meta.url);
    const root = dirname(require.resolve('amqplib'));
    const defs = require(join(root, 'lib', 'defs.js')) as Codec['defs'];
    const frame = require(join(root, 'lib', 'frame.js')) as Codec['frame'];
    const ok = [defs.encodeMethod, defs.encodeProperties, frame.makeBodyFrame, frame.parseFrame, frame.decodeFrame].every((f) => typeof f === 'function');
    codec = ok && [defs.BasicDeliver, defs.BasicPublish, defs.BasicAck, defs.BasicProperties].every(Number.isInteger) ? { defs, frame } : null;
  } catch {
    codec = null;
  }
  return codec;
}

/**
 * The headers the broker adds to a message dead-lettered from each wait
 * queue before `tier` (RabbitMQ 3.10: one `x-death` table per queue, the
 * latest first, and the first death's exchange, queue and reason).
 */
export function deathHeaders(tier: number, waitQueue: (i: number) => string, nowSec: number): Record<string, unknown> {
  if (tier <= 0) return {};
  const deaths = [];
  for (let i = tier; i >= 1; i--) {
    const queue = waitQueue(i);
    deaths.push({ count: 1, reason: 'expired', queue, time: { '!': 'timestamp', value: nowSec }, exchange: '', 'routing-keys': [queue] });
  }
  return { 'x-death': deaths, 'x-first-death-exchange': '', 'x-first-death-queue': waitQueue(1), 'x-first-death-reason': 'expired' };
}

const FRAME_MAX = 131_072;

/**
 * `msg` as the consumer would get it from the socket: its deliver method,
 * content header and body encoded into frames and decoded again by amqplib's
 * codec. `msg` unchanged when the codec is not there.
 */
export function throughFrames(msg: ConsumeMessage): ConsumeMessage {
  const c = loadCodec();
  if (c === null) return msg;
  const { defs, frame } = c;
  const bytes = Buffer.concat([
    defs.encodeMethod(defs.BasicDeliver, 1, { ...msg.fields }),
    defs.encodeProperties(defs.BasicProperties, 1, msg.content.length, { ...msg.properties }),
    frame.makeBodyFrame(1, msg.content),
  ]);
  const decoded: { fields?: Record<string, unknown>; content?: Buffer }[] = [];
  let rest: Buffer = bytes;
  for (;;) {
    const f = frame.parseFrame(rest, FRAME_MAX);
    if (f === false) break;
    decoded.push(frame.decodeFrame(f));
    rest = f.rest;
  }
  const [method, header, body] = decoded;
  if (!method?.fields || !header?.fields || !body?.content) return msg;
  return { fields: method.fields as unknown as ConsumeMessage['fields'], properties: header.fields as unknown as ConsumeMessage['properties'], content: body.content as ConsumeMessage['content'] };
}

/** Encodes a hand-on publish as the channel would send it (method, header, body frames); nothing is sent. */
export function encodePublish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): number {
  const c = loadCodec();
  if (c === null) return 0;
  const { defs, frame } = c;
  const { mandatory, ...props } = options;
  return (
    defs.encodeMethod(defs.BasicPublish, 1, { exchange, routingKey, mandatory: mandatory ?? false, immediate: false, ticket: 0 }).length +
    defs.encodeProperties(defs.BasicProperties, 1, content.length, props as Record<string, unknown>).length +
    frame.makeBodyFrame(1, content).length
  );
}

/** Encodes an ack as the channel would send it; nothing is sent. */
export function encodeAck(deliveryTag: number): number {
  const c = loadCodec();
  if (c === null) return 0;
  return c.defs.encodeMethod(c.defs.BasicAck, 1, { deliveryTag, multiple: false }).length;
}
