// Bundles (issue 14): many skips or deferrals to one queue as one broker
// message; the codec, the bundler that groups them, and the tier side that
// opens one and acks it only when every entry is done.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConsumeMessage, Options } from 'amqplib';
import pino from 'pino';
import { BUNDLE_CONTENT_TYPE, bundleable, decodeBundle, encodeBundle, entrySize, isBundle, type BundleEntry } from '../../src/broker/bundle.js';
import { namesFor } from '../../src/broker/topology.js';
import { loadConfig } from '../../src/core/config.js';
import { ErrorCodes, NotifyError } from '../../src/core/errors.js';
import { createWorkerMetrics } from '../../src/core/metrics.js';
import type { HttpDeliverer } from '../../src/delivery/deliverer.js';
import { createSigner } from '../../src/delivery/signing.js';
import { MerchantSigners } from '../../src/merchants/signers.js';
import { handleBundle } from '../../src/tier/bundle-delivery.js';
import type { ChannelLink } from '../../src/tier/channel-link.js';
import { HandOnBundler } from '../../src/tier/hand-on-bundler.js';
import { MerchantSlots } from '../../src/tier/merchant-slots.js';
import type { OriginGate } from '../../src/tier/origin-gate.js';
import { AttemptPipeline } from '../../src/tier/pipeline.js';

interface Sent {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

class Link implements ChannelLink {
  readonly sent: Sent[] = [];
  readonly acked: ConsumeMessage[] = [];
  readonly requeued: ConsumeMessage[] = [];
  closed = false;
  fail = false;
  /** Publishes refused before any goes through. */
  failFirst = 0;
  async publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    await Promise.resolve();
    if (this.fail) throw new NotifyError(ErrorCodes.BROKER_NACK, 'nack');
    if (this.failFirst > 0) {
      this.failFirst--;
      throw new NotifyError(ErrorCodes.BROKER_NACK, 'nack');
    }
    this.sent.push({ exchange, routingKey, content, options });
  }
  ack(m: ConsumeMessage): void {
    this.acked.push(m);
  }
  requeue(m: ConsumeMessage): void {
    this.requeued.push(m);
  }
}

const entry = (id: string, headers: Record<string, unknown> = { 'notify-attempt': 1 }): BundleEntry => ({
  content: Buffer.from(JSON.stringify({ id, url: 'https://m.example/n', body: { id } })),
  options: { messageId: id, contentType: 'application/json', timestamp: 1_700_000_000, headers, persistent: true, mandatory: true },
});

/** A delivery of `content` with `options`, as the consumer would get it. */
const delivered = (content: Buffer, options: Options.Publish, tag = 7, redelivered = false): ConsumeMessage =>
  ({
    content,
    fields: { deliveryTag: tag, redelivered, exchange: '', routingKey: 'p.work.1', consumerTag: 'c' },
    properties: { messageId: options.messageId, contentType: options.contentType, timestamp: options.timestamp, headers: options.headers },
  }) as unknown as ConsumeMessage;

describe('bundle codec', () => {
  it('carries each entry\'s content, id, type, timestamp and headers, and keeps the delivery\'s fields', () => {
    const es = [entry('a'), entry('b', { 'notify-attempt': 2, 'notify-last-error': 'ECONNREFUSED', 'notify-deferred': 3, flag: true, none: null }), entry('c')];
    const b = encodeBundle(es, Date.UTC(2026, 0, 1));
    assert.equal(b.options.contentType, BUNDLE_CONTENT_TYPE);
    assert.equal(b.options.headers!['notify-bundle'], 3);
    assert.equal(b.options.persistent, true);
    assert.equal(b.options.mandatory, true);
    const msg = delivered(b.content, b.options);
    assert.equal(isBundle(msg), true);
    const out = decodeBundle(msg);
    assert.equal(out.length, 3);
    out.forEach((m, i) => {
      assert.deepEqual(m.content, es[i]!.content);
      assert.equal(m.properties.messageId, es[i]!.options.messageId);
      assert.equal(m.properties.contentType, 'application/json');
      assert.equal(m.properties.timestamp, 1_700_000_000);
      assert.deepEqual(m.properties.headers, es[i]!.options.headers);
      assert.equal(m.fields.deliveryTag, 7);
      assert.equal(isBundle(m), false);
    });
  });

  it('refuses what is not a bundle with MESSAGE_INVALID', () => {
    for (const body of ['not json', '{"v":2,"entries":[{}]}', '{"v":1,"entries":[]}', '{"v":1,"entries":[{"headers":{}}]}', '{"v":1,"entries":[{"body":"","headers":[]}]}']) {
      assert.throws(
        () => decodeBundle(delivered(Buffer.from(body), { headers: { 'notify-bundle': 1 } })),
        (e: unknown) => (e as NotifyError).code === ErrorCodes.MESSAGE_INVALID,
        body,
      );
    }
  });

  it('leaves out headers JSON cannot carry', () => {
    assert.equal(bundleable(entry('a').options), true);
    assert.equal(bundleable({ headers: { raw: Buffer.from('x') } }), false);
    assert.equal(bundleable({ headers: { table: { a: 1 } } }), false);
    assert.equal(bundleable({ headers: { n: Number.NaN } }), false);
  });
});

describe('HandOnBundler', () => {
  const opts = { max: 4, maxBytes: 1_000_000, lingerMs: 5 };

  it('sends hand-ons to one queue within the linger as one bundle, and tells each caller', async () => {
    const link = new Link();
    const sizes: number[] = [];
    const b = new HandOnBundler(opts, (n) => sizes.push(n));
    const r = await Promise.all([b.add(link, '', 'p.wait.1', entry('a')), b.add(link, '', 'p.wait.1', entry('b')), b.add(link, '', 'p.wait.1', entry('c'))]);
    assert.deepEqual(r, [true, true, true]);
    assert.equal(link.sent.length, 1);
    assert.equal(link.sent[0]!.routingKey, 'p.wait.1');
    assert.deepEqual(
      decodeBundle(delivered(link.sent[0]!.content, link.sent[0]!.options)).map((m) => m.properties.messageId),
      ['a', 'b', 'c'],
    );
    assert.deepEqual(sizes, [3]);
  });

  it('sends at once when full, and keeps queues apart', async () => {
    const link = new Link();
    const b = new HandOnBundler({ ...opts, lingerMs: 60_000 });
    const full = Promise.all(['a', 'b', 'c', 'd'].map((id) => b.add(link, '', 'p.wait.1', entry(id))));
    const other = b.add(link, '', 'p.hold.0', entry('e'));
    assert.deepEqual(await full, [true, true, true, true]);
    assert.equal(link.sent.length, 1);
    b.flushAll();
    assert.equal(await other, false, 'a lone hand-on is published by its caller');
    assert.equal(link.sent.length, 1);
  });

  it('a lone hand-on, an unbundleable one, a refused bundle and a closed link all leave the publish to the caller', async () => {
    const link = new Link();
    const b = new HandOnBundler(opts);
    assert.equal(await b.add(link, '', 'q', entry('a')), false);
    assert.equal(await b.add(link, '', 'q', { content: Buffer.from('{}'), options: { headers: { raw: Buffer.from('x') } } }), false);
    link.fail = true;
    assert.deepEqual(await Promise.all([b.add(link, '', 'q', entry('a')), b.add(link, '', 'q', entry('b'))]), [false, false]);
    link.fail = false;
    link.closed = true;
    assert.equal(await b.add(link, '', 'q', entry('a')), false);
    assert.equal(link.sent.length, 0);
    assert.equal(await new HandOnBundler({ ...opts, max: 1 }).add(new Link(), '', 'q', entry('a')), false, 'max 1: never bundled');
  });

  it('a hand-on with its own expiration goes alone (a bundle carries none), while the others still bundle', async () => {
    const link = new Link();
    const b = new HandOnBundler(opts);
    const timed = { ...entry('t'), options: { ...entry('t').options, expiration: '900' } };
    const r = await Promise.all([b.add(link, '', 'q', entry('a')), b.add(link, '', 'q', timed), b.add(link, '', 'q', entry('b'))]);
    assert.deepEqual(r, [true, false, true]);
    assert.equal(link.sent.length, 1);
    assert.deepEqual(decodeBundle(delivered(link.sent[0]!.content, link.sent[0]!.options)).map((m) => m.properties.messageId), ['a', 'b']);
  });

  it('starts a new bundle past the byte bound, and its encoded entries stay within it', async () => {
    const link = new Link();
    // Non-ASCII headers and long ids: the bound counts bytes, not characters.
    const big = (id: string) => entry(`${id}-${'x'.repeat(80)}`, { 'notify-attempt': 1, 'notify-last-error': 'connexion refusée — 拒绝连接' });
    const maxBytes = 2 * entrySize(big('a'));
    const b = new HandOnBundler({ max: 100, maxBytes, lingerMs: 5 });
    const r = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => b.add(link, '', 'q', big(id))));
    assert.deepEqual(r, [true, true, true, true, false], 'two bundles of two; the fifth alone');
    assert.deepEqual(link.sent.map((s) => decodeBundle(delivered(s.content, s.options)).map((m) => String(m.properties.messageId).slice(0, 1))), [['a', 'b'], ['c', 'd']]);
    for (const s of link.sent) assert.ok(s.content.length <= maxBytes, `${s.content.length} bytes against ${maxBytes}`);
  });

  it('keeps channels apart, and puts hand-ons from the entries of one channel\'s bundles together', async () => {
    const one = new Link();
    const two = new Link();
    const b = new HandOnBundler({ max: 100, maxBytes: 1_000_000, lingerMs: 5 });
    // Links standing for entries of two delivered bundles, both on channel one.
    const entryOf = (root: Link): ChannelLink => ({ publish: (exchange, routingKey, content, options) => root.publish(exchange, routingKey, content, options), ack: () => undefined, requeue: () => undefined, closed: false, root });
    const r = await Promise.all([b.add(entryOf(one), '', 'q', entry('a')), b.add(one, '', 'q', entry('b')), b.add(entryOf(one), '', 'q', entry('c')), b.add(two, '', 'q', entry('d')), b.add(two, '', 'q', entry('e'))]);
    assert.deepEqual(r, [true, true, true, true, true]);
    assert.deepEqual(one.sent.map((s) => decodeBundle(delivered(s.content, s.options)).length), [3]);
    assert.deepEqual(two.sent.map((s) => decodeBundle(delivered(s.content, s.options)).length), [2]);
  });

  it('hand-ons of two channels arriving in turn (a worker\'s old and new consumer channels) still share a bundle per channel', async () => {
    const one = new Link();
    const two = new Link();
    const b = new HandOnBundler({ max: 100, maxBytes: 1_000_000, lingerMs: 5 });
    const r = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((id, i) => b.add(i % 2 === 0 ? one : two, '', 'q', entry(id))));
    assert.deepEqual(r, [true, true, true, true, true, true]);
    assert.deepEqual(one.sent.map((s) => decodeBundle(delivered(s.content, s.options)).map((m) => m.properties.messageId)), [['a', 'c', 'e']]);
    assert.deepEqual(two.sent.map((s) => decodeBundle(delivered(s.content, s.options)).map((m) => m.properties.messageId)), [['b', 'd', 'f']]);
  });
});

describe('handleBundle', () => {
  const backTo = { exchange: 'p.work', routingKey: 'tier.1' };
  let refusals = 0;
  const using = (handle: (l: ChannelLink, m: ConsumeMessage) => Promise<void>, stop = new AbortController()) => ({
    handle,
    backTo,
    stopSignal: stop.signal,
    onRefused: () => void refusals++,
  });
  const bundleOf = (...ids: string[]): ConsumeMessage => {
    const b = encodeBundle(ids.map((id) => entry(id)));
    return delivered(b.content, b.options);
  };
  /** The bundle as the broker hands it out once more (a quorum queue counts earlier deliveries). */
  const deliveredAgain = (msg: ConsumeMessage, count: number): ConsumeMessage =>
    ({ ...msg, fields: { ...msg.fields, redelivered: true }, properties: { ...msg.properties, headers: { ...msg.properties.headers, 'x-delivery-count': count } } }) as ConsumeMessage;

  it('hands every entry on as its own message and acks the bundle once all are done', async () => {
    const link = new Link();
    const seen: string[] = [];
    const msg = bundleOf('a', 'b', 'c');
    await handleBundle(link, msg, using(async (l, m) => {
      seen.push(String(m.properties.messageId));
      await l.publish('', 'p.wait.2', m.content, { messageId: m.properties.messageId });
      l.ack(m);
    }));
    assert.deepEqual(seen, ['a', 'b', 'c']);
    assert.deepEqual(link.sent.map((s) => s.options.messageId), ['a', 'b', 'c']);
    assert.deepEqual(link.acked, [msg]);
    assert.equal(link.requeued.length, 0);
  });

  it('gives a requeued entry back to its tier\'s work queue alone, retrying while the broker refuses', async () => {
    const link = new Link();
    link.failFirst = 2;
    refusals = 0;
    const msg = bundleOf('a', 'b');
    await handleBundle(link, msg, using(async (l, m) => (m.properties.messageId === 'b' ? l.requeue(m) : l.ack(m))));
    assert.equal(refusals, 2, 'two refusals, told of, then it went');
    assert.equal(link.sent.length, 1);
    assert.deepEqual([link.sent[0]!.exchange, link.sent[0]!.routingKey, link.sent[0]!.options.messageId], ['p.work', 'tier.1', 'b']);
    assert.deepEqual(link.sent[0]!.options.headers, entry('b').options.headers);
    assert.equal(link.sent[0]!.options.persistent, true);
    assert.deepEqual(link.acked, [msg]);
    assert.equal(link.requeued.length, 0);
  });

  it('goes back whole only when the worker stops with a give-back refused; a closed channel leaves it to the broker', async () => {
    const link = new Link();
    link.fail = true;
    const stop = new AbortController();
    const msg = bundleOf('a', 'b');
    const done = handleBundle(link, msg, using(async (l, m) => (m.properties.messageId === 'b' ? l.requeue(m) : l.ack(m)), stop));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(link.acked.length + link.requeued.length, 0, 'still retrying while the worker runs');
    stop.abort();
    await done;
    assert.deepEqual(link.requeued, [msg]);
    assert.equal(link.acked.length, 0);

    const gone = new Link();
    gone.closed = true;
    await handleBundle(gone, msg, using(async () => undefined));
    assert.equal(gone.requeued.length + gone.acked.length, 0);
  });

  it('never lets one entry stand for another: an entry left undone keeps the bundle unacked', async () => {
    const msg = bundleOf('a', 'b');
    const twice = new Link();
    await handleBundle(twice, msg, using(async (l, m) => {
      if (m.properties.messageId === 'a') {
        l.ack(m);
        l.ack(m);
      }
    }));
    assert.equal(twice.acked.length, 0, 'entry a acked twice does not stand for b');
    assert.deepEqual(twice.requeued, [msg]);
  });

  it('splits a bundle delivered twice before into single messages instead of handling it again; once before, it is handled', async () => {
    const b = encodeBundle(['a', 'b', 'c'].map((id) => entry(id)));
    const first = delivered(b.content, b.options, 9);
    const link = new Link();
    await handleBundle(link, deliveredAgain(first, 2), using(async () => assert.fail('not handled as a whole again')));
    assert.deepEqual(link.sent.map((s) => [s.exchange, s.routingKey, s.options.messageId]), [['p.work', 'tier.1', 'a'], ['p.work', 'tier.1', 'b'], ['p.work', 'tier.1', 'c']]);
    for (const s of link.sent) assert.equal(s.options.headers!['x-delivery-count'], undefined, 'an entry carries its own headers only');
    assert.equal(link.acked.length, 1);

    const again = new Link();
    const seen: string[] = [];
    await handleBundle(again, deliveredAgain(first, 1), using(async (l, m) => {
      seen.push(String(m.properties.messageId));
      l.ack(m);
    }));
    assert.deepEqual(seen, ['a', 'b', 'c'], 'one channel loss (a failover) does not split it');
    assert.equal(again.acked.length, 1);

    // RabbitMQ 4.3 and later: requeues raise x-acquired-count, not x-delivery-count.
    const acquired = new Link();
    const late = { ...first, properties: { ...first.properties, headers: { ...first.properties.headers, 'x-delivery-count': 0, 'x-acquired-count': 2 } } } as ConsumeMessage;
    await handleBundle(acquired, late, using(async () => assert.fail('not handled as a whole again')));
    assert.deepEqual(acquired.sent.map((s) => s.options.messageId), ['a', 'b', 'c']);
  });

  it('passes an unreadable bundle on as it came (the pipeline parks it invalid)', async () => {
    const link = new Link();
    const msg = delivered(Buffer.from('garbage'), { messageId: 'x', contentType: BUNDLE_CONTENT_TYPE, headers: { 'notify-bundle': 2 } });
    assert.equal(isBundle(msg), true);
    const seen: ConsumeMessage[] = [];
    await handleBundle(link, msg, using(async (_l, m) => void seen.push(m)));
    assert.deepEqual(seen, [msg]);
  });

  it('is known by its header and its content type together', () => {
    assert.equal(isBundle(delivered(Buffer.from('[]'), { contentType: 'application/json', headers: { 'notify-bundle': 2 } })), false);
    assert.equal(isBundle(delivered(Buffer.from('[]'), { contentType: BUNDLE_CONTENT_TYPE, headers: {} })), false);
  });
});

describe('AttemptPipeline with a bundler', () => {
  const config = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s,2s', NOTIFY_PREFIX: 'p' } });
  const names = namesFor('p');
  const silent = pino({ level: 'silent' });
  const noHttp = { originOf: (u: string) => new URL(u).origin, attempt: async () => assert.fail('no request for a skip or a deferral'), close: async () => undefined } as unknown as HttpDeliverer;
  const make = (gate: OriginGate) => {
    const metrics = createWorkerMetrics({ role: 'tier', tier: '0' }, false);
    const bundler = new HandOnBundler({ max: 64, maxBytes: 512 * 1024, lingerMs: 5 });
    const p = new AttemptPipeline(
      { tier: 0, names, logger: silent, attemptLogger: silent, metrics, stopSignal: new AbortController().signal, gate, merchants: null, slots: new MerchantSlots(), failureMarks: null, history: null, bundler },
      { config, signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing), deliverer: noHttp },
    );
    return { p, metrics };
  };
  const msg = (id: string): ConsumeMessage =>
    delivered(Buffer.from(JSON.stringify({ id, url: 'https://down.example/n', body: {} })), { messageId: id, contentType: 'application/json', headers: { 'notify-attempt': 0, 'notify-due-at': Date.now() } });
  const count = async (metrics: ReturnType<typeof createWorkerMetrics>, name: string, labels: Record<string, string>) =>
    (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name)!.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;

  it('skips past a failing origin travel as one bundle to the next rung; each is acked and counted', async () => {
    const failing = { admit: () => ({ kind: 'skip', reason: 'origin-failing', lastError: 'ECONNREFUSED' }) } as unknown as OriginGate;
    const { p, metrics } = make(failing);
    const link = new Link();
    const ms = ['a', 'b', 'c'].map(msg);
    await Promise.all(ms.map((m) => p.handle(link, m)));
    const toWait = link.sent.filter((s) => s.routingKey === names.waitQueue(1));
    assert.equal(toWait.length, 1);
    const entries = decodeBundle(delivered(toWait[0]!.content, toWait[0]!.options));
    assert.deepEqual(entries.map((e) => e.properties.messageId), ['a', 'b', 'c']);
    for (const e of entries) {
      assert.equal(e.properties.headers!['notify-attempt'], 1, 'the skip moved it down the ladder');
      assert.match(String(e.properties.headers!['notify-last-error']), /origin-failing|ECONNREFUSED/);
    }
    assert.equal(link.acked.length, 3);
    assert.equal(await count(metrics, 'notify_attempts_total', { tier: '0', outcome: 'skipped' }), 3);
  });

  it('a bundle the broker refuses: each hand-on is published alone, then acked', async () => {
    const failing = { admit: () => ({ kind: 'skip', reason: 'origin-failing', lastError: 'ECONNREFUSED' }) } as unknown as OriginGate;
    const { p } = make(failing);
    const link = new Link();
    link.failFirst = 1;
    await Promise.all(['a', 'b'].map((id) => p.handle(link, msg(id))));
    assert.deepEqual(link.sent.map((s) => [s.routingKey, s.options.messageId, isBundle(delivered(s.content, s.options))]).sort(), [[names.waitQueue(1), 'a', false], [names.waitQueue(1), 'b', false]]);
    assert.equal(link.acked.length, 2);
  });

  it('deferrals for a saturated origin travel as one bundle to the hold queue', async () => {
    const saturated = { admit: () => ({ kind: 'defer' }) } as unknown as OriginGate;
    const { p, metrics } = make(saturated);
    const link = new Link();
    await Promise.all(['a', 'b'].map((id) => p.handle(link, msg(id))));
    assert.equal(link.sent.length, 1);
    assert.equal(link.sent[0]!.routingKey, names.holdQueue(0));
    const entries = decodeBundle(delivered(link.sent[0]!.content, link.sent[0]!.options));
    assert.deepEqual(entries.map((e) => e.properties.headers!['notify-deferred']), [1, 1]);
    assert.equal(link.acked.length, 2);
    assert.equal(await count(metrics, 'notify_deferrals_total', { tier: '0' }), 2);
  });
});
