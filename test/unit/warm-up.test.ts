import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/core/config.js';
import { H, decodeNotification } from '../../src/core/message.js';
import { createSigner } from '../../src/delivery/signing.js';
import { MerchantSigners } from '../../src/merchants/signers.js';
import type { GateOptions } from '../../src/tier/origin-gate.js';
import { deadLetteredFrom, openWarmUpRig, warmUp, warmUpConfig, warmUpGuard, warmUpMessage, warmUpPath, warmUpStatus } from '../../src/tier/warm-up.js';
import type { ChannelLink } from '../../src/tier/channel-link.js';
import { namesFor } from '../../src/broker/topology.js';
import { WarmUpFrames, decodeFrames, encodeAck, encodePublish, loadCodec } from '../../src/tier/warm-up-frames.js';

const config = loadConfig({ configFile: null, env: {} });
const o = config.delivery.perOrigin;
const gate: GateOptions = {
  policy: { maxConcurrency: o.maxConcurrency, initialLimit: o.initialLimit, failureThreshold: o.failureThreshold, probeIntervalMs: o.probeIntervalMs, maxProbeIntervalMs: o.maxProbeIntervalMs },
  concurrency: config.delivery.concurrency,
  queueTargetMs: o.queueTargetMs,
  windowSpare: 0,
  maxOrigins: o.maxOrigins,
  idleMs: 60_000,
};
const signers = () => ({ signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing) });

describe('tier warm-up', () => {
  it('builds deliveries the pipeline accepts, as a hand-on from the tier before would', () => {
    const now = Date.now();
    const msg = warmUpMessage(2, 7, 'http://127.0.0.1:9', now, config.limits);
    const n = decodeNotification(msg.content, config.limits, now);
    assert.equal(n.id, 'warm-up-2-7');
    assert.equal(n.url, `http://127.0.0.1:9${warmUpPath(7)}`);
    assert.equal(msg.properties.messageId, n.id);
    assert.equal(msg.properties.headers?.[H.attempt], 2);
    assert.equal(msg.properties.headers?.[H.dueAt], now);
    assert.equal(msg.properties.headers?.[H.firstAttemptAt], now);
    assert.equal(warmUpMessage(0, 0, 'http://127.0.0.1:9', now, config.limits).properties.headers?.[H.firstAttemptAt], undefined);
  });

  it("carries the headers the broker adds when it dead-letters a retry from its wait queue (one x-death table: a hand-on drops the x- headers it got)", () => {
    const now = 1_796_000_000_000;
    const h = warmUpMessage(2, 0, 'http://127.0.0.1:9', now, config.limits, 'P.wait.2').properties.headers ?? {};
    assert.deepEqual(h['x-death'], [{ count: { '!': 'long', value: 1 }, reason: 'expired', queue: 'P.wait.2', time: { '!': 'timestamp', value: now / 1000 }, exchange: '', 'routing-keys': ['P.wait.2'] }]);
    assert.equal(h['x-first-death-queue'], 'P.wait.2');
    assert.equal(h['x-first-death-reason'], 'expired');
    assert.equal(warmUpMessage(2, 0, 'http://127.0.0.1:9', now, config.limits).properties.headers?.['x-death'], undefined, 'none for a tier published to straight');
  });

  it("half of them (two in four, so failures and successes alike) expired by their own expiration: x-death then ends with original-expiration, as the broker writes it", () => {
    const now = 1_796_000_000_000;
    const deaths = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => (warmUpMessage(1, i, 'http://127.0.0.1:9', now, config.limits, 'P.wait.1').properties.headers?.['x-death'] as unknown as Record<string, unknown>[])[0]!);
    assert.deepEqual(deaths.map((d) => d['original-expiration']), [undefined, undefined, '750', '750', undefined, undefined, '750', '750']);
    assert.deepEqual(Object.keys(deaths[2]!), ['count', 'reason', 'queue', 'time', 'exchange', 'routing-keys', 'original-expiration']);
    assert.deepEqual([0, 1, 2, 3].map((i) => warmUpPath(i).startsWith('/fail/')), [true, false, true, false]);
  });

  it('takes the dead-letter headers from the wait queue a hand-on to the tier goes through, none for a tier without a delay', () => {
    const names = namesFor('P');
    assert.equal(deadLetteredFrom(names, [0, 1000, 3000], 1), names.waitQueue(1));
    assert.equal(deadLetteredFrom(names, [0, 1000, 3000], 0), null);
    assert.equal(deadLetteredFrom(names, [0, 0, 3000], 1), null);
    assert.equal(deadLetteredFrom(names, [500, 1000], 0), names.waitQueue(0), 'a delayed first attempt comes through wait.0');
  });

  it("goes through amqplib's own frame codec, as a delivery from the socket does (the pinned amqplib has it where expected)", () => {
    const codec = loadCodec();
    assert.notEqual(codec, null);
    const frames = new WarmUpFrames(codec);
    const msg = warmUpMessage(3, 5, 'http://127.0.0.1:9', Date.now(), config.limits, 'P.wait.3');
    const got = frames.delivery(msg);
    assert.notEqual(got, msg, 'decoded anew, not the same object');
    assert.equal(frames.decoded, 1);
    assert.deepEqual(got.content, msg.content);
    assert.deepEqual(got.fields, msg.fields);
    assert.equal(got.properties.messageId, msg.properties.messageId);
    assert.equal(got.properties.deliveryMode, 2);
    // As the broker's: the long and the timestamp come back as amqplib decodes them.
    const deaths = got.properties.headers?.['x-death'] as unknown as Record<string, unknown>[];
    assert.equal(deaths[0]!.count, 1);
    assert.deepEqual(deaths[0]!.time, (msg.properties.headers?.['x-death'] as unknown as Record<string, unknown>[])[0]!.time);
    assert.equal(got.properties.headers?.[H.attempt], 3);
  });

  it('encodes a hand-on and an ack as the channel does (options turned into fields and properties first)', () => {
    const codec = loadCodec()!;
    const content = Buffer.from('{"id":"x"}');
    const [method, header, body] = decodeFrames(codec, encodePublish(codec, '', 'P.wait.4', content, { persistent: true, mandatory: true, messageId: 'x', headers: { [H.attempt]: 4 } }));
    assert.equal(method!.id, codec.defs.BasicPublish);
    assert.deepEqual([method!.fields!.exchange, method!.fields!.routingKey, method!.fields!.mandatory], ['', 'P.wait.4', true]);
    assert.equal(header!.fields!.deliveryMode, 2, 'persistent becomes deliveryMode 2, as amqplib does');
    assert.equal(header!.fields!.messageId, 'x');
    assert.deepEqual(header!.fields!.headers, { [H.attempt]: 4 });
    assert.deepEqual(body!.content, content);
    const [ack] = decodeFrames(codec, encodeAck(codec, 7));
    assert.deepEqual([ack!.id, ack!.fields!.deliveryTag, ack!.fields!.multiple], [codec.defs.BasicAck, 7, false]);
  });

  it('turns itself off at the first codec error, and the warm-up goes on without frames', () => {
    const broken = { ...loadCodec()!, frame: { ...loadCodec()!.frame, parseFrame: () => { throw new Error('moved'); } } };
    const frames = new WarmUpFrames(broken);
    const msg = warmUpMessage(1, 0, 'http://127.0.0.1:9', Date.now(), config.limits, 'P.wait.1');
    assert.equal(frames.delivery(msg), msg);
    assert.equal(frames.delivery(msg), msg);
    assert.equal(frames.decoded, 0);
    const throwing = { ...loadCodec()!, args: { ...loadCodec()!.args, publish: () => { throw new TypeError('bad option'); } } };
    const f2 = new WarmUpFrames(throwing);
    assert.doesNotThrow(() => f2.publish('', 'q', Buffer.from('x'), { expiration: 5 }));
    assert.equal(f2.delivery(msg), msg, 'off after the publish error');
    assert.equal(new WarmUpFrames(null).delivery(msg), msg);
  });

  it('answers every other one with a 500, so the retry hand-on is warmed as well as the delivered one', () => {
    assert.deepEqual([0, 1, 2, 3].map((i) => warmUpStatus(warmUpPath(i))), [500, 200, 500, 200]);
  });

  it('runs the count through the pipeline without a broker, and reports it', async () => {
    const r = await warmUp(config, 1, gate, signers(), { count: 40, budgetMs: 10_000, concurrency: 4 });
    assert.equal(r.error, undefined);
    assert.equal(r.attempts, 40);
    assert.equal(r.frames, 40, "every delivery was decoded by amqplib's codec");
  });

  it('warms the request and the signing under merchants.required too (its notifications name no merchant, and are not parked)', async () => {
    const required = { ...config, merchants: { ...config.merchants, required: true } };
    const rig = await openWarmUpRig(required, 1, gate, signers(), new AbortController().signal);
    try {
      const routed: string[] = [];
      const link: ChannelLink = { publish: async (_e, key) => void routed.push(key), ack: () => undefined, requeue: () => undefined, closed: false };
      await rig.pipeline.handle(link, warmUpMessage(1, 1, rig.base, Date.now(), config.limits, rig.from));
      await rig.pipeline.handle(link, warmUpMessage(1, 2, rig.base, Date.now(), config.limits, rig.from));
      const dead = namesFor(config.prefix).dead;
      assert.ok(!routed.includes(dead), `none parked: ${routed.join(', ')}`);
      assert.ok(routed.length >= 1, 'the failed one (a 500) was handed on: its request was made');
    } finally {
      await rig.close();
    }
  });

  it("runs on the worker's own configuration object, not a copy (V8 optimises for the objects it ran on); a copy only where merchants.required would park its notifications", async () => {
    assert.equal(warmUpConfig(config, 0), config);
    assert.equal(warmUpConfig(config, 1), config);
    const required = { ...config, merchants: { ...config.merchants, required: true } };
    assert.equal(warmUpConfig(required, 1), required, 'a later tier is not held to it: its notifications carry a first attempt');
    const copy = warmUpConfig(required, 0);
    assert.notEqual(copy, required);
    assert.equal(copy.merchants.required, false);
    assert.equal(copy.delivery, required.delivery);
    const rig = await openWarmUpRig(config, 1, gate, signers(), new AbortController().signal);
    try {
      assert.equal(rig.pipeline.current.config, config);
    } finally {
      await rig.close();
    }
  });

  it('delivers to its own loopback server through the SSRF guard the worker has (private networks not allowed)', async () => {
    assert.equal(config.delivery.allowPrivateNetworks, false);
    const guard = warmUpGuard(config.delivery);
    assert.ok(guard !== null, 'a guard, as the worker has');
    assert.equal(guard.check('127.0.0.1').allowed, true, 'its own server');
    assert.equal(guard.check('127.0.0.2').allowed, false, 'nothing else on the loopback');
    assert.equal(guard.check('10.0.0.1').allowed, false);
    assert.equal(warmUpGuard({ ...config.delivery, allowPrivateNetworks: true }), null, 'none, as the worker has none');
    const rig = await openWarmUpRig(config, 1, gate, signers(), new AbortController().signal);
    try {
      const routed: string[] = [];
      const link: ChannelLink = { publish: async (_e, key) => void routed.push(key), ack: () => undefined, requeue: () => undefined, closed: false };
      // Odd ones are answered 200: delivered, nothing handed on down the ladder.
      await rig.pipeline.handle(link, warmUpMessage(1, 1, rig.base, Date.now(), config.limits, rig.from));
      await rig.pipeline.handle(link, warmUpMessage(1, 3, rig.base, Date.now(), config.limits, rig.from));
      const n = namesFor(config.prefix);
      const ladder = [n.dead, ...config.scheduleMs.map((_, i) => n.waitQueue(i)), ...config.scheduleMs.map((_, i) => n.routingKey(i))];
      assert.deepEqual(routed.filter((k) => ladder.includes(k)), [], `not blocked (a blocked attempt is a retry): ${routed.join(', ')}`);
      // An even one is answered 500: a request was made and failed, so it goes on down the ladder.
      await rig.pipeline.handle(link, warmUpMessage(1, 2, rig.base, Date.now(), config.limits, rig.from));
      assert.equal(routed.filter((k) => ladder.includes(k)).length, 1);
      // The rig's deliverer has that guard: another loopback address is refused before any connect.
      const errors: unknown[] = [];
      const watching: ChannelLink = { ...link, publish: async (_e, _k, _c, options) => void errors.push(options?.headers?.[H.lastError]) };
      await rig.pipeline.handle(watching, warmUpMessage(1, 5, 'http://127.0.0.2:9', Date.now(), config.limits, rig.from));
      assert.ok(errors.some((e) => typeof e === 'string' && e.includes('DESTINATION_BLOCKED')), `blocked: ${JSON.stringify(errors)}`);
    } finally {
      await rig.close();
    }
  });

  it("checks its notifications against the worker's limits: limits too tight for them end the warm-up with the error, nothing run (it used to park every one invalid, silently)", async () => {
    const tight = { ...config, limits: { ...config.limits, idMaxLength: 10 } };
    const r = await warmUp(tight, 1, gate, signers(), { count: 20, budgetMs: 10_000, concurrency: 4 });
    assert.equal(r.attempts, 0);
    assert.equal((r.error as { code?: string } | undefined)?.code, 'VALIDATION');
    assert.match(r.error?.message ?? '', /^id: is longer than 10 characters/);
  });

  it('does nothing for a count of 0, and stops at its budget', async () => {
    assert.deepEqual(await warmUp(config, 1, gate, signers(), { count: 0, budgetMs: 10_000, concurrency: 4 }), { attempts: 0, ms: 0, frames: 0 });
    const r = await warmUp(config, 1, gate, signers(), { count: 1000, budgetMs: 0, concurrency: 4 });
    assert.equal(r.attempts, 0);
  });

  it('ends when its worker stops (the worker then closes the signers it uses)', async () => {
    const stop = new AbortController();
    const running = warmUp(config, 1, gate, signers(), { count: 100_000, budgetMs: 60_000, concurrency: 4 }, stop.signal);
    setTimeout(() => stop.abort(), 50);
    const t0 = Date.now();
    const r = await running;
    assert.ok(Date.now() - t0 < 5000, 'ended soon after the stop, not at its budget');
    assert.ok(r.attempts < 100_000);
  });

  it('is configured by delivery.warmUp (NOTIFY_DELIVERY_WARM_UP) and delivery.warmUpTiers', () => {
    assert.equal(config.delivery.warmUp, 2000);
    assert.deepEqual(config.delivery.warmUpTiers, [1]);
    assert.equal(loadConfig({ configFile: null, env: { NOTIFY_DELIVERY_WARM_UP: '0' } }).delivery.warmUp, 0);
    assert.throws(() => loadConfig({ configFile: null, env: { NOTIFY_DELIVERY_WARM_UP: '-1' } }));
  });

  it('then goes through the broker: delivery.warmUpThroughBroker (NOTIFY_DELIVERY_WARM_UP_BROKER), 0 for none, on private queues under the prefix', () => {
    assert.equal(config.delivery.warmUpThroughBroker, 2000);
    assert.equal(loadConfig({ configFile: null, env: { NOTIFY_DELIVERY_WARM_UP_BROKER: '0' } }).delivery.warmUpThroughBroker, 0);
    assert.throws(() => loadConfig({ configFile: null, env: { NOTIFY_DELIVERY_WARM_UP_BROKER: '-1' } }));
    assert.throws(() => loadConfig({ configFile: null, env: { NOTIFY_DELIVERY_WARM_UP_BROKER: 'many' } }));
    const n = namesFor('acme');
    assert.equal(n.warmUpQueue(1, '4242-0a1b2c3d', 'work'), 'acme.warm-up.1.4242-0a1b2c3d.work');
    // Not a name of the topology: a tier's own queues and a warm-up's never meet.
    assert.ok(![n.workQueue(1), n.waitQueue(1), n.holdQueue(1), n.dead, n.history].includes(n.warmUpQueue(1, '4242-0a1b2c3d', 'work')));
  });
});
