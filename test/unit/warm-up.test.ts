import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/core/config.js';
import { H, decodeNotification } from '../../src/core/message.js';
import { createSigner } from '../../src/delivery/signing.js';
import { MerchantSigners } from '../../src/merchants/signers.js';
import type { GateOptions } from '../../src/tier/origin-gate.js';
import { warmUp, warmUpMessage, warmUpPath, warmUpStatus } from '../../src/tier/warm-up.js';
import { deathHeaders, encodeAck, encodePublish, loadCodec, throughFrames } from '../../src/tier/warm-up-frames.js';

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
    const msg = warmUpMessage(2, 7, 'http://127.0.0.1:9', now);
    const n = decodeNotification(msg.content, config.limits, now);
    assert.equal(n.id, 'warm-up-2-7');
    assert.equal(n.url, `http://127.0.0.1:9${warmUpPath(7)}`);
    assert.equal(msg.properties.messageId, n.id);
    assert.equal(msg.properties.headers?.[H.attempt], 2);
    assert.equal(msg.properties.headers?.[H.dueAt], now);
    assert.equal(msg.properties.headers?.[H.firstAttemptAt], now);
    assert.equal(warmUpMessage(0, 0, 'http://127.0.0.1:9', now).properties.headers?.[H.firstAttemptAt], undefined);
  });

  it("carries the broker's dead-letter headers of a retry tier: one x-death table per wait queue passed, the latest first", () => {
    const now = 1_796_000_000_000;
    const wait = (i: number): string => `P.wait.${i}`;
    const h = warmUpMessage(2, 0, 'http://127.0.0.1:9', now, wait).properties.headers ?? {};
    assert.deepEqual(
      (h['x-death'] as unknown as { queue: string }[]).map((d) => d.queue),
      ['P.wait.2', 'P.wait.1'],
    );
    assert.deepEqual((h['x-death'] as unknown as Record<string, unknown>[])[1], { count: 1, reason: 'expired', queue: 'P.wait.1', time: { '!': 'timestamp', value: now / 1000 }, exchange: '', 'routing-keys': ['P.wait.1'] });
    assert.equal(h['x-first-death-queue'], 'P.wait.1');
    assert.deepEqual(deathHeaders(0, wait, 0), {}, 'tier 0 is not dead-lettered into');
  });

  it("goes through amqplib's own frame codec, as a delivery from the socket does (the pinned amqplib has it where expected)", () => {
    assert.notEqual(loadCodec(), null);
    const msg = warmUpMessage(3, 5, 'http://127.0.0.1:9', Date.now(), (i) => `P.wait.${i}`);
    const got = throughFrames(msg);
    assert.notEqual(got, msg, 'decoded anew, not the same object');
    assert.deepEqual(got.content, msg.content);
    assert.equal(got.fields.deliveryTag, msg.fields.deliveryTag);
    assert.equal(got.properties.messageId, msg.properties.messageId);
    assert.deepEqual(got.properties.headers, msg.properties.headers);
    assert.ok(encodePublish('P.wait', 'r.4', msg.content, { persistent: true, headers: msg.properties.headers, mandatory: true }) > msg.content.length);
    assert.ok(encodeAck(5) > 0);
  });

  it('answers every other one with a 500, so the retry hand-on is warmed as well as the delivered one', () => {
    assert.deepEqual([0, 1, 2, 3].map((i) => warmUpStatus(warmUpPath(i))), [500, 200, 500, 200]);
  });

  it('runs the count through the pipeline without a broker, and reports it', async () => {
    const r = await warmUp(config, 1, gate, signers(), { count: 40, budgetMs: 10_000, concurrency: 4 });
    assert.equal(r.error, undefined);
    assert.equal(r.attempts, 40);
    assert.equal(r.frames, true, "its deliveries were decoded by amqplib's codec");
  });

  it('does nothing for a count of 0, and stops at its budget', async () => {
    assert.deepEqual(await warmUp(config, 1, gate, signers(), { count: 0, budgetMs: 10_000, concurrency: 4 }), { attempts: 0, ms: 0, frames: false });
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
});
