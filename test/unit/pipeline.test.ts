// The attempt pipeline with a fake channel and a fake merchant: what it
// publishes, acks and requeues for each kind of attempt result.
import type { HistorySink } from '../../src/history/sink.js';
import type { AttemptRecord, DeadRecord, HistoryRecord, RunRecord } from '../../src/history/records.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConsumeMessage, Options } from 'amqplib';
import pino from 'pino';
import { namesFor } from '../../src/broker/topology.js';
import { decodeNotification } from '../../src/core/message.js';
import { loadConfig } from '../../src/core/config.js';
import { ErrorCodes, NotifyError, type ErrorCode } from '../../src/core/errors.js';
import { createWorkerMetrics } from '../../src/core/metrics.js';
import type { HttpDeliverer, OutgoingRequest, TimedResult } from '../../src/delivery/deliverer.js';
import { createSigner } from '../../src/delivery/signing.js';
import type { ChannelLink } from '../../src/tier/channel-link.js';
import { OriginGate } from '../../src/tier/origin-gate.js';
import { MerchantSlots } from '../../src/tier/merchant-slots.js';
import type { MerchantLookup } from '../../src/tier/merchant-check.js';
import type { MerchantEntry } from '../../src/merchants/merchant.js';
import { MerchantSigners } from '../../src/merchants/signers.js';
import { AttemptPipeline } from '../../src/tier/pipeline.js';

const config = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s,2s', NOTIFY_PREFIX: 'p' } });
const names = namesFor('p');
const silent = pino({ level: 'silent' });
const GATE = {
  policy: { maxConcurrency: 4, initialLimit: 2, failureThreshold: 3, probeIntervalMs: 1000, maxProbeIntervalMs: 5000 },
  concurrency: 8,
  queueTargetMs: 200,
  windowSpare: 8,
  maxOrigins: 100,
  idleMs: 60_000,
};

interface Published {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

class FakeLink implements ChannelLink {
  readonly published: Published[] = [];
  acked = 0;
  requeued = 0;
  closed = false;
  failures = 0;
  constructor(
    private readonly failFirst = 0,
    private readonly failWith: ErrorCode = ErrorCodes.BROKER_NACK,
  ) {}
  async publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
    if (exchange !== names.outcomes && this.failures < this.failFirst) {
      this.failures++;
      throw new NotifyError(this.failWith, 'broker refused the message (nack)');
    }
    this.published.push({ exchange, routingKey, content, options });
  }
  ack(): void {
    this.acked++;
  }
  requeue(): void {
    this.requeued++;
  }
}

function fakeDeliverer(result: TimedResult): HttpDeliverer & { calls: OutgoingRequest[] } {
  const calls: OutgoingRequest[] = [];
  return {
    calls,
    originOf: (url: string) => new URL(url).origin,
    attempt: async (req: OutgoingRequest, _needBody?: boolean, headBytes = 0) => {
      calls.push({ ...req, headBytes } as OutgoingRequest);
      return result;
    },
    close: async () => undefined,
  } as unknown as HttpDeliverer & { calls: OutgoingRequest[] };
}

/** A merchant whose first request is held until `release()`; later ones answer 200 at once. `calls`: their webhook-ids. */
/** A deliverer that holds the first call (or those `holds` picks, by id and place) until `release`. */
function firstCallHeld(holds: (id: string, index: number) => boolean = (_id, i) => i === 0): { d: HttpDeliverer; calls: string[]; release: () => void } {
  const calls: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const d = {
    originOf: (url: string) => new URL(url).origin,
    attempt: async (req: OutgoingRequest) => {
      const id = req.headers['webhook-id']!;
      calls.push(id);
      if (holds(id, calls.length - 1)) await held;
      return { kind: 'response', status: 200, body: 'ok', durationMs: 1 } as TimedResult;
    },
    close: async () => undefined,
  } as unknown as HttpDeliverer;
  return { d, calls, release };
}

function message(tier: number, body: object = { id: 'n1', url: 'https://m.example/notify', body: { a: 1 } }): ConsumeMessage {
  return {
    content: Buffer.from(JSON.stringify(body)),
    fields: { deliveryTag: 1, redelivered: false, exchange: names.work, routingKey: `tier.${tier}`, consumerTag: 'c' },
    properties: { messageId: 'n1', headers: { 'notify-attempt': tier, 'notify-due-at': Date.now() }, contentType: 'application/json' },
  } as unknown as ConsumeMessage;
}

/** The same message with more headers. */
function withHeaders(msg: ConsumeMessage, headers: Record<string, unknown>): ConsumeMessage {
  return { ...msg, properties: { ...msg.properties, headers: { ...msg.properties.headers, ...headers } } } as ConsumeMessage;
}

function pipeline(tier: number, deliverer: HttpDeliverer, stop = new AbortController(), history: HistorySink | null = null, gate: OriginGate = new OriginGate(GATE), cfg = config) {
  const metrics = createWorkerMetrics({ role: 'tier', tier: String(tier) }, false);
  const p = new AttemptPipeline(
    { tier, names, logger: silent, attemptLogger: silent, metrics, stopSignal: stop.signal, gate, merchants: null, slots: new MerchantSlots(), failureMarks: null, history },
    { config: cfg, signer: createSigner(cfg.signing), merchantSigners: new MerchantSigners(cfg.signing), deliverer },
  );
  return { p, metrics };
}

const counter = async (metrics: ReturnType<typeof createWorkerMetrics>, name: string, labels: Record<string, string>): Promise<number> => {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
};

describe('AttemptPipeline', () => {
  it('a 500 on tier 0 goes to the next wait queue with the attempt headers, then is acked', async () => {
    const d = fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 1 });
    const { p } = pipeline(0, d);
    const link = new FakeLink();
    await p.handle(link, message(0));
    assert.equal(d.calls.length, 1);
    assert.equal(d.calls[0]!.headers['webhook-id'], 'n1');
    const hand = link.published.find((x) => x.exchange !== names.outcomes)!;
    assert.deepEqual([hand.exchange, hand.routingKey], ['', names.waitQueue(1)]);
    assert.equal(hand.options.headers!['notify-attempt'], 1);
    assert.match(String(hand.options.headers!['notify-last-error']), /status 500/);
    assert.deepEqual([link.acked, link.requeued], [1, 0]);
  });

  it('one published without createdAt is handed on with the createdAt it was given, so every tier and the history see one', async () => {
    const fail = fakeDeliverer({ kind: 'response', status: 500, body: '', durationMs: 1 });
    const link = new FakeLink();
    await pipeline(0, fail).p.handle(link, message(0));
    const handed = link.published.find((x) => x.exchange !== names.outcomes)!;
    const createdAt = (JSON.parse(handed.content.toString('utf8')) as { createdAt?: unknown }).createdAt;
    assert.equal(typeof createdAt, 'number', 'pinned in the body handed on');
    // The next tier reads the same time, however much later it decodes it.
    assert.equal(decodeNotification(handed.content, config.limits, Date.now() + 60_000).createdAt, createdAt);
    const withIt = new FakeLink();
    const original = message(0, { id: 'n1', url: 'https://m.example/notify', body: { a: 1 }, createdAt: 1_700_000_000_000 });
    await pipeline(0, fail).p.handle(withIt, original);
    assert.equal(withIt.published.find((x) => x.exchange !== names.outcomes)!.content, original.content, 'one that has it is handed on as it came');
  });

  it('a retry is due one delay after the failed request went out: the wait queue gets the rest as an expiration', async () => {
    // The request went out 60 ms before the answer was handled (a busy worker reads answers late).
    const sentAt = Date.now() - 60;
    const { p } = pipeline(0, fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 60, sentAt }));
    const link = new FakeLink();
    await p.handle(link, message(0));
    const handedBy = Date.now();
    const hand = link.published.find((x) => x.routingKey === names.waitQueue(1))!;
    assert.equal(hand.options.headers!['notify-due-at'], sentAt + 1000);
    // The rest of the delay from the hand-on, whenever within this test that came.
    const left = Number(hand.options.expiration);
    assert.ok(left >= sentAt + 1000 - handedBy && left <= 940, `expiration ${hand.options.expiration}`);
    // One sent longer ago than the allowance (250 ms by default) keeps the rest of its delay less 250 ms.
    const slowSent = Date.now() - 3000;
    const slow = pipeline(0, fakeDeliverer({ kind: 'error', code: 'TIMEOUT', message: 'deadline', durationMs: 3000, sentAt: slowSent }));
    const link2 = new FakeLink();
    const before = Date.now();
    await slow.p.handle(link2, message(0));
    const hand2 = link2.published.find((x) => x.routingKey === names.waitQueue(1))!;
    assert.equal(Number(hand2.options.expiration), 750);
    const due = Number(hand2.options.headers!['notify-due-at']);
    assert.ok(due >= before + 750 && due <= Date.now() + 750, String(due));
  });

  it('with delayFromStart 0, a retry waits its whole delay from the hand-on (no expiration)', async () => {
    const off = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s,2s', NOTIFY_PREFIX: 'p', NOTIFY_DELIVERY_DELAY_FROM_START: '0' } });
    assert.equal(off.delivery.delayFromStartMs, 0);
    const d = fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 60, sentAt: Date.now() - 60 });
    const { p } = pipeline(0, d, undefined, null, undefined, off);
    const link = new FakeLink();
    const before = Date.now();
    await p.handle(link, message(0));
    const hand = link.published.find((x) => x.routingKey === names.waitQueue(1))!;
    assert.equal(hand.options.expiration, undefined);
    assert.ok(Number(hand.options.headers!['notify-due-at']) >= before + 1000);
  });

  it('a hand-on the broker refuses is published again with backoff; the merchant is called once', async () => {
    const d = fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 1 });
    const { p, metrics } = pipeline(0, d);
    const link = new FakeLink(3);
    const started = Date.now();
    await p.handle(link, message(0));
    assert.equal(d.calls.length, 1, 'one HTTP call, whatever the broker did');
    assert.equal(link.failures, 3);
    assert.equal(link.published.filter((x) => x.routingKey === names.waitQueue(1)).length, 1);
    assert.deepEqual([link.acked, link.requeued], [1, 0]);
    assert.equal(await counter(metrics, 'notify_handon_failures_total', { tier: '0', reason: 'refused' }), 3);
    assert.ok(Date.now() - started >= 200, 'backed off between tries');
  });

  it('a hand-on whose channel is gone is left to the broker (no ack, no requeue on a dead channel)', async () => {
    const link = new FakeLink(100, ErrorCodes.BROKER_UNAVAILABLE);
    const calls: string[] = [];
    const d = {
      originOf: (url: string) => new URL(url).origin,
      attempt: async (req: OutgoingRequest) => {
        calls.push(req.headers['webhook-id']!);
        link.closed = true; // the connection drops while the merchant answers
        return { kind: 'response', status: 500, body: 'no', durationMs: 1 } as TimedResult;
      },
      close: async () => undefined,
    } as unknown as HttpDeliverer;
    const { p } = pipeline(0, d);
    await p.handle(link, message(0));
    assert.deepEqual([calls.length, link.acked, link.requeued], [1, 0, 0]);
  });

  it('a delivery whose channel went while it waited for its origin is not attempted: the broker redelivers it', async () => {
    const { d, calls, release } = firstCallHeld();
    // One request at a time to the origin: the second waits in the gate behind the first.
    const gate = new OriginGate({ ...GATE, policy: { ...GATE.policy, maxConcurrency: 1, initialLimit: 1 } });
    const { p, metrics } = pipeline(0, d, new AbortController(), null, gate);
    const old = new FakeLink();
    const first = p.handle(old, message(0, { id: 'a', url: 'https://m.example/notify', body: {} }));
    const waiting = p.handle(old, message(0, { id: 'b', url: 'https://m.example/notify', body: {} }));
    await new Promise((r) => setTimeout(r, 20));
    old.closed = true; // the connection is lost; the broker requeues both
    release();
    await Promise.all([first, waiting]);
    assert.deepEqual(calls, ['a'], 'the waiting one made no request');
    // 'a' answered and is acked (a no-op on a real closed channel); 'b' neither acked, requeued nor handed on.
    assert.deepEqual([old.acked, old.requeued, old.published.filter((x) => x.exchange !== names.outcomes).length], [1, 0, 0]);
    assert.equal(await counter(metrics, 'notify_attempts_total', { tier: '0', outcome: 'success' }), 1, 'one attempt counted');
    // Its slot was given back: the redelivered copy, on the new channel, goes at once.
    const live = new FakeLink();
    await p.handle(live, message(0, { id: 'b', url: 'https://m.example/notify', body: {} }));
    assert.deepEqual(calls, ['a', 'b']);
    assert.equal(live.acked, 1);
  });

  it('a worker that stops while a hand-on keeps failing gives the message back', async () => {
    const d = fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 1 });
    const stop = new AbortController();
    const { p } = pipeline(0, d, stop);
    const link = new FakeLink(100);
    setTimeout(() => stop.abort(), 150);
    await p.handle(link, message(0));
    assert.deepEqual([link.acked, link.requeued], [0, 1]);
  });

  it('success is acked with no hand-on; the last tier parks exhausted; an invalid message parks at once', async () => {
    const ok = fakeDeliverer({ kind: 'response', status: 200, body: '', durationMs: 1 });
    const a = new FakeLink();
    await pipeline(0, ok).p.handle(a, message(0));
    assert.equal(a.published.filter((x) => x.exchange !== names.outcomes).length, 0);
    assert.equal(a.acked, 1);

    const fail = fakeDeliverer({ kind: 'response', status: 500, body: '', durationMs: 1 });
    const b = new FakeLink();
    await pipeline(2, fail).p.handle(b, message(2));
    const parked = b.published.find((x) => x.routingKey === names.dead)!;
    assert.equal(parked.options.headers!['notify-dead-reason'], 'exhausted');

    const c = new FakeLink();
    const never = fakeDeliverer({ kind: 'response', status: 200, body: '', durationMs: 1 });
    await pipeline(0, never).p.handle(c, message(0, { id: 'n1', url: 'https://m.example/', body: 'x', headers: { Host: 'evil' } }));
    assert.equal(never.calls.length, 0, 'never sent');
    assert.equal(c.published.find((x) => x.routingKey === names.dead)!.options.headers!['notify-dead-reason'], 'invalid');
  });

  it('merchants.required: one naming no merchant (published past the ingress) is parked invalid, never sent', async () => {
    const required = { ...config, merchants: { ...config.merchants, required: true } };
    const d = fakeDeliverer({ kind: 'response', status: 200, body: '', durationMs: 1 });
    const link = new FakeLink();
    await pipeline(0, d, undefined, null, undefined, required).p.handle(link, message(0));
    assert.equal(d.calls.length, 0, 'never sent');
    const parked = link.published.find((x) => x.routingKey === names.dead);
    assert.equal(parked?.options.headers!['notify-dead-reason'], 'invalid');
    assert.equal(link.acked, 1);
    // A later tier's notification is a retry under way (it passed tier 0, or came before the setting): it goes on.
    const retry = new FakeLink();
    await pipeline(1, d, undefined, null, undefined, required).p.handle(retry, withHeaders(message(1), { 'notify-first-attempt-at': Date.now() - 1000 }));
    assert.equal(d.calls.length, 1, 'attempted');
    assert.equal(retry.published.find((x) => x.routingKey === names.dead), undefined);
    // One published straight to a later tier never passed tier 0: held to it there.
    const straight = new FakeLink();
    await pipeline(1, d, undefined, null, undefined, required).p.handle(straight, message(1));
    assert.equal(d.calls.length, 1, 'not attempted');
    assert.equal(straight.published.find((x) => x.routingKey === names.dead)?.options.headers!['notify-dead-reason'], 'invalid');
  });
});

describe('AttemptPipeline: deferrals (issue 14)', () => {
  /** A gate that defers every notification: its origin is saturated. */
  const deferring = { admit: () => ({ kind: 'defer' }) } as unknown as OriginGate;

  it('to the hold queue, counted in notify-deferred, its wait kept from the first deferral; acked, counted, not attempted', async () => {
    const d = fakeDeliverer({ kind: 'response', status: 200, body: '', durationMs: 1 });
    const { p, metrics } = pipeline(0, d, new AbortController(), null, deferring);
    const fresh = new FakeLink();
    const t0 = Date.now();
    await p.handle(fresh, message(0));
    const h = fresh.published.find((x) => x.routingKey === names.holdQueue(0))!;
    assert.ok(h, 'published to the hold queue');
    assert.equal(h.options.headers!['notify-deferred'], 1);
    assert.equal(h.options.headers!['notify-attempt'], 0, 'a wait is not an attempt');
    const since = Number(h.options.headers!['notify-waiting-since']);
    assert.ok(since >= t0 && since <= Date.now());
    assert.deepEqual([d.calls.length, fresh.acked, fresh.requeued], [0, 1, 0]);

    const again = new FakeLink();
    await p.handle(again, withHeaders(message(0), { 'notify-waiting-since': t0 - 300, 'notify-deferred': 1 }));
    const h2 = again.published.find((x) => x.routingKey === names.holdQueue(0))!;
    assert.equal(h2.options.headers!['notify-deferred'], 2);
    assert.equal(h2.options.headers!['notify-waiting-since'], t0 - 300, 'the budget runs from the first deferral');
    assert.equal(await counter(metrics, 'notify_deferrals_total', { tier: '0' }), 2);
  });

  it('moving down the ladder drops the wait: the next tier waits afresh', async () => {
    const d = fakeDeliverer({ kind: 'response', status: 500, body: '', durationMs: 1 });
    const { p } = pipeline(0, d);
    const link = new FakeLink();
    await p.handle(link, withHeaders(message(0), { 'notify-waiting-since': Date.now() - 100, 'notify-deferred': 1 }));
    const next = link.published.find((x) => x.routingKey === names.waitQueue(1))!;
    assert.equal(next.options.headers!['notify-waiting-since'], undefined);
    assert.equal(next.options.headers!['notify-deferred'], 1, 'the count of deferrals stays');
  });
});

describe('AttemptPipeline: history records', () => {
  /** A sink that keeps what it is given (and fails when told to). */
  function fakeSink(fail = false): HistorySink & { records: HistoryRecord[] } {
    const records: HistoryRecord[] = [];
    return {
      records,
      record: async (...r: HistoryRecord[]) => {
        if (fail) throw new Error('nack');
        records.push(...r);
      },
    } as unknown as HistorySink & { records: HistoryRecord[] };
  }

  it('tier 0 records the start of a ladder nobody recorded (with the notification), then the attempt', async () => {
    const sink = fakeSink();
    const { p } = pipeline(0, fakeDeliverer({ kind: 'response', status: 500, body: 'try later', durationMs: 3 }), new AbortController(), sink);
    const link = new FakeLink();
    await p.handle(link, message(0));
    assert.deepEqual(
      sink.records.map((r) => r.t),
      ['run', 'attempt'],
    );
    const [start, a] = sink.records as [RunRecord, AttemptRecord];
    assert.equal(start.via, 'direct');
    assert.equal(start.run, '');
    assert.equal(JSON.parse(start.content).id, 'n1');
    assert.deepEqual([a.attempt, a.tier, a.status, a.outcome, a.answer, a.final], [0, 0, 500, 'retry', 'try later', null]);
    assert.equal(link.acked, 1);
  });

  it('a ladder recorded by the ingress is not recorded again; the last attempt says how it ended', async () => {
    const sink = fakeSink();
    const { p } = pipeline(2, fakeDeliverer({ kind: 'response', status: 200, body: 'success', durationMs: 2 }), new AbortController(), sink);
    await p.handle(new FakeLink(), withHeaders(message(2), { 'notify-run': 'r9', 'notify-recorded': 1 }));
    assert.equal(sink.records.length, 1);
    const a = sink.records[0] as AttemptRecord;
    assert.deepEqual([a.run, a.tier, a.outcome, a.final], ['r9', 2, 'success', { status: 'delivered' }]);
    // The last tier failing: dead, with its reason.
    const sink2 = fakeSink();
    const { p: p2 } = pipeline(2, fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 2 }), new AbortController(), sink2);
    await p2.handle(new FakeLink(), withHeaders(message(2), { 'notify-run': 'r9', 'notify-recorded': 1 }));
    assert.deepEqual((sink2.records[0] as AttemptRecord).final, { status: 'dead', reason: 'exhausted' });
  });

  it('a client ladder (run header, not recorded) is recorded by tier 0 as the client\'s', async () => {
    const sink = fakeSink();
    const { p } = pipeline(0, fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 }), new AbortController(), sink);
    await p.handle(new FakeLink(), withHeaders(message(0), { 'notify-run': 'c1' }));
    assert.deepEqual(
      sink.records.map((r) => (r.t === 'run' ? `${r.t}:${r.via}:${r.run}` : r.t)),
      ['run:client:c1', 'attempt'],
    );
  });

  /** A pipeline whose notifications name merchant m1, allowed one request at a time. */
  function merchantPipeline(d: HttpDeliverer, slots = new MerchantSlots(), history: HistorySink | null = null, gate: OriginGate = new OriginGate(GATE), over: Partial<MerchantEntry> = {}): AttemptPipeline {
    const m1: MerchantEntry = { id: 'm1', enabled: true, signing: 'none', allowedOrigins: new Set(['https://m.example']), maxConcurrency: 1, maxAttempts: null, success: null, failing: false, secrets: [], version: 'v1', ...over };
    const merchants: MerchantLookup = { get: (id) => (id === 'm1' ? m1 : undefined), lookup: async (id) => (id === 'm1' ? m1 : undefined), isLoaded: true, isUp: true };
    return new AttemptPipeline(
      { tier: 0, names, logger: silent, attemptLogger: silent, metrics: createWorkerMetrics({ role: 'tier', tier: '0' }, false), stopSignal: new AbortController().signal, gate, merchants, slots, failureMarks: null, history },
      { config, signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing), deliverer: d },
    );
  }

  /** A link whose first publish (not an outcome event) waits until `confirm()`: a slow confirm, a quorum leader moving. */
  function slowFirstPublish(): { link: FakeLink; confirm: () => void } {
    let confirm!: () => void;
    const held = new Promise<void>((r) => (confirm = r));
    class SlowFirst extends FakeLink {
      private first = true;
      override async publish(exchange: string, routingKey: string, content: Buffer, options: Options.Publish): Promise<void> {
        if (exchange !== names.outcomes && this.first) {
          this.first = false;
          await held;
        }
        return super.publish(exchange, routingKey, content, options);
      }
    }
    return { link: new SlowFirst(), confirm };
  }

  const ofM1 = (id: string) => ({ id, url: 'https://m.example/notify', body: { a: 1 }, merchant: 'm1' });

  it("a standard merchant none of whose secrets opens (NOTIFY_SECRETS_KEY changed) waits in the hold queue, not parked, never sent unsigned", async () => {
    const d = fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 });
    const link = new FakeLink();
    await merchantPipeline(d, new MerchantSlots(), null, new OriginGate(GATE), { signing: 'standard', secrets: [], unopened: 1 }).handle(link, message(0, ofM1('n1')));
    assert.equal(d.calls.length, 0, 'not sent');
    assert.equal(link.published.find((x) => x.routingKey === names.dead), undefined, 'not parked');
    assert.ok(link.published.some((x) => x.routingKey === names.holdQueue(0)), `deferred: ${link.published.map((x) => x.routingKey).join(', ')}`);
    // One this key opens is in its grace and ended, the newest does not open (a daemon still on the old key): waits too.
    const ended = new FakeLink();
    await merchantPipeline(d, new MerchantSlots(), null, new OriginGate(GATE), { signing: 'standard', secrets: ['whsec_' + Buffer.alloc(32, 3).toString('base64')], secretEnds: [Date.now() - 1000], unopened: 1 }).handle(ended, message(0, ofM1('n3')));
    assert.equal(ended.published.find((x) => x.routingKey === names.dead), undefined, 'not parked when the only one it opens has ended');
    assert.ok(ended.published.some((x) => x.routingKey === names.holdQueue(0)));
    // A standard merchant with no secret at all (not one this key fails to open) is parked as before.
    const none = new FakeLink();
    await merchantPipeline(d, new MerchantSlots(), null, new OriginGate(GATE), { signing: 'standard', secrets: [], unopened: 0 }).handle(none, message(0, ofM1('n2')));
    assert.equal(none.published.find((x) => x.routingKey === names.dead)?.options.headers!['notify-dead-reason'], 'invalid');
  });

  it('a skip on a channel already gone is neither handed on nor recorded: the redelivered copy is (one record, not two)', async () => {
    const slots = new MerchantSlots();
    assert.equal(slots.tryAcquire('m1', 1), true, 'the merchant is at its cap: the next one is skipped');
    const sink = fakeSink();
    const d = fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 });
    const link = new FakeLink();
    link.closed = true;
    const msg = withHeaders(message(0, { id: 'n1', url: 'https://m.example/notify', body: { a: 1 }, merchant: 'm1' }), { 'notify-waiting-since': Date.now() - 60_000, 'notify-run': 'r1', 'notify-recorded': 1 });
    await merchantPipeline(d, slots, sink).handle(link, msg);
    assert.deepEqual([sink.records.length, link.published.length, link.acked, d.calls.length], [0, 0, 0, 0]);
  });

  it("a merchant's maxConcurrency slot is given back when its request ends, not after the hand-on publishes", async () => {
    const d = fakeDeliverer({ kind: 'response', status: 500, body: 'no', durationMs: 1 });
    const p = merchantPipeline(d);
    // The first hand-on's confirm is slow: held until let go.
    const { link, confirm } = slowFirstPublish();
    const body = ofM1;
    const first = p.handle(link, message(0, body('n1')));
    while (d.calls.length === 0) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 20));
    // Its wait at this tier is over: with the merchant's one slot taken it would be skipped down the ladder.
    await p.handle(link, withHeaders(message(0, body('n2')), { 'notify-waiting-since': Date.now() - 60_000 }));
    assert.equal(d.calls.length, 2, 'the second notification was attempted, not skipped');
    confirm();
    await first;
    assert.equal(link.acked, 2);
  });

  it("a merchant's slot is not held while a deferral publishes to the hold queue (no request is made there)", async () => {
    const d = fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 });
    // The origin is saturated for the first notification (deferred), and has room for the next.
    let admissions = 0;
    const gate = { admit: () => (admissions++ === 0 ? { kind: 'defer' } : { kind: 'go', probe: false, release: () => undefined }) } as unknown as OriginGate;
    const p = merchantPipeline(d, new MerchantSlots(), null, gate);
    const { link, confirm } = slowFirstPublish();
    const first = p.handle(link, message(0, ofM1('n1')));
    while (admissions === 0) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, 20));
    // Its wait is over: with the merchant's one slot still taken it would be skipped down the ladder unattempted.
    await p.handle(link, withHeaders(message(0, ofM1('n2')), { 'notify-waiting-since': Date.now() - 60_000 }));
    assert.equal(d.calls.length, 1, 'the second notification was attempted, not skipped');
    confirm();
    await first;
    assert.deepEqual(link.published.filter((x) => x.exchange !== names.outcomes).map((x) => x.routingKey), [names.holdQueue(0)], 'the first one deferred, the second delivered');
    assert.equal(link.acked, 2);
  });

  it('parked before an attempt (an unsignable notification): a dead record with the reason', async () => {
    const sink = fakeSink();
    const rsa = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s,2s', NOTIFY_PREFIX: 'p', NOTIFY_SIGNING_SCHEME: 'none' } });
    const { p } = pipeline(1, fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 }), new AbortController(), sink);
    p.configure({ ...p.current, config: rsa, signer: 'no key' as never });
    await p.handle(new FakeLink(), withHeaders(message(1), { 'notify-run': 'r1', 'notify-recorded': 1 }));
    assert.equal(sink.records.length, 1);
    const d = sink.records[0] as DeadRecord;
    assert.deepEqual([d.t, d.reason, d.run], ['dead', 'invalid', 'r1']);
    assert.match(d.error, /signing failed: no key/);
  });

  it('a reload while an attempt signs sends it through the new deliverer, not the closed old one', async () => {
    const closed = fakeDeliverer({ kind: 'error', code: 'UND_ERR_CLOSED', message: 'the deliverer is closed', durationMs: 0 });
    const fresh = fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 });
    const { p } = pipeline(0, closed);
    let signed: () => void = () => undefined;
    const slowSigner = {
      scheme: 'standard',
      sign: () => new Promise<{ headers: Record<string, string>; body: string }>((r) => (signed = () => r({ headers: { 'webhook-signature': 'v1,x' }, body: '{}' }))),
      close: async () => undefined,
    };
    p.configure({ ...p.current, signer: slowSigner as never });
    const link = new FakeLink();
    const handled = p.handle(link, message(0));
    await new Promise((r) => setImmediate(r));
    p.configure({ ...p.current, deliverer: fresh });
    signed();
    await handled;
    assert.deepEqual([closed.calls.length, fresh.calls.length, link.acked], [0, 1, 1]);
  });

  it('history refused by the broker does not hold up delivery: acked all the same, counted', async () => {
    const { p, metrics } = pipeline(0, fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 }), new AbortController(), fakeSink(true));
    const link = new FakeLink();
    await p.handle(link, message(0));
    assert.equal(link.acked, 1);
    assert.equal(await counter(metrics, 'notify_history_records_lost_total', {}), 2);
  });

  it('with history the first KiB of every answer is read; without, a 2xx nobody checks is not', async () => {
    const withH = fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 });
    await pipeline(0, withH, new AbortController(), fakeSink()).p.handle(new FakeLink(), message(0));
    const without = fakeDeliverer({ kind: 'response', status: 200, body: 'ok', durationMs: 1 });
    await pipeline(0, without).p.handle(new FakeLink(), message(0));
    assert.deepEqual(
      [withH, without].map((d) => (d.calls[0] as OutgoingRequest & { headBytes: number }).headBytes),
      [1024, 0],
    );
  });
});

describe('AttemptPipeline: the wait budget', () => {
  it('runs from when the notification reached the tier, not from when it was due: a late one waits for its busy origin instead of being skipped', async () => {
    const calls: string[] = [];
    const slow = {
      originOf: (url: string) => new URL(url).origin,
      attempt: async (req: OutgoingRequest) => {
        calls.push(req.headers['webhook-id']!);
        await new Promise((r) => setTimeout(r, 30));
        return { kind: 'response', status: 200, body: 'ok', durationMs: 30 } as TimedResult;
      },
      close: async () => undefined,
    } as unknown as HttpDeliverer;
    const metrics = createWorkerMetrics({ role: 'tier', tier: '0' }, false);
    // One request at a time to the origin: the second notification must wait for the first.
    const gate = new OriginGate({ ...GATE, policy: { ...GATE.policy, maxConcurrency: 1, initialLimit: 1 } });
    const p = new AttemptPipeline(
      { tier: 0, names, logger: silent, attemptLogger: silent, metrics, stopSignal: new AbortController().signal, gate, merchants: null, slots: new MerchantSlots(), failureMarks: null, history: null },
      { config, signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing), deliverer: slow },
    );
    // Due an hour ago (a backlog, a paused tier): far past tier 0's 1 s budget if it counted from then.
    const late = (id: string): ConsumeMessage => {
      const m = message(0, { id, url: 'https://m.example/notify', body: { a: 1 } });
      return { ...m, properties: { ...m.properties, messageId: id, headers: { 'notify-attempt': 0, 'notify-due-at': Date.now() - 3600_000 } } } as ConsumeMessage;
    };
    const link = new FakeLink();
    await Promise.all([p.handle(link, late('a')), p.handle(link, late('b'))]);
    assert.deepEqual(calls.sort(), ['a', 'b'], 'both attempted');
    assert.equal(link.published.filter((x) => x.routingKey === names.waitQueue(1)).length, 0, 'none skipped down the ladder');
    assert.equal(await counter(metrics, 'notify_attempts_total', { tier: '0', outcome: 'skipped' }), 0);
  });

  it('the last rung never skips for saturation: a notification past its wait budget waits for a slot there, not parked without a request', async () => {
    const { d: slow, calls, release } = firstCallHeld();
    // queueTarget 10 ms: the first attempt, held, soon counts as slow (not an origin only at its cap, which would be waited for).
    const gate = new OriginGate({ ...GATE, queueTargetMs: 10, policy: { ...GATE.policy, maxConcurrency: 1, initialLimit: 1 } });
    const run = (tier: number) =>
      new AttemptPipeline(
        { tier, names, logger: silent, attemptLogger: silent, metrics: createWorkerMetrics({ role: 'tier', tier: String(tier) }, false), stopSignal: new AbortController().signal, gate, merchants: null, slots: new MerchantSlots(), failureMarks: null, history: null },
        { config, signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing), deliverer: slow },
      );
    // Waiting in the tier since long before its budget, its origin busy with another attempt (limit 1).
    const overdue = (tier: number, id: string): ConsumeMessage => {
      const m = message(tier, { id, url: 'https://m.example/notify', body: { a: 1 } });
      return { ...m, properties: { ...m.properties, messageId: id, headers: { 'notify-attempt': tier, 'notify-due-at': Date.now(), 'notify-waiting-since': Date.now() - 60_000 } } } as ConsumeMessage;
    };
    const busy = run(2).handle(new FakeLink(), overdue(2, 'first'));
    await new Promise((r) => setTimeout(r, 20));
    // An earlier rung, its origin's attempt in flight past queueTarget: skipped down the ladder at once (its next rung will try).
    const middle = new FakeLink();
    await run(1).handle(middle, overdue(1, 'middle'));
    assert.equal(middle.published.filter((x) => x.routingKey === names.waitQueue(2)).length, 1, 'tier 1 skipped it on to tier 2');
    // The last rung (tier 2 of 0s,1s,2s): it waits for the slot instead of being parked exhausted unattempted.
    const last = new FakeLink();
    const lastDone = run(2).handle(last, overdue(2, 'last'));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(last.published.length, 0, 'neither parked nor handed on while it waits');
    release();
    await Promise.all([busy, lastDone]);
    assert.deepEqual(calls, ['first', 'last'], 'attempted once the slot was free');
    assert.equal(last.acked, 1);
    assert.equal(last.published.filter((x) => x.exchange === names.dead || x.routingKey === names.dead).length, 0, 'not parked');
  });
  it('a schedule ending in 0s: a notification beyond its saturated origin\'s bound, or its merchant\'s cap, waits in the hold queue, never parked unattempted', async () => {
    const once = loadConfig({ env: { NOTIFY_SCHEDULE: '0s', NOTIFY_PREFIX: 'p' } });
    // Holds the first call and the merchant's first until released.
    const { d: slow, calls, release } = firstCallHeld((id) => id === 'a' || id === 'm1a');
    const gate = new OriginGate({ ...GATE, windowSpare: 0, policy: { ...GATE.policy, maxConcurrency: 1, initialLimit: 1 } });
    const m1: MerchantEntry = { id: 'm1', enabled: true, signing: 'none', allowedOrigins: new Set(['https://m1.example']), maxConcurrency: 1, maxAttempts: null, success: null, failing: false, secrets: [], version: 'v1' };
    const merchants: MerchantLookup = { get: (id) => (id === 'm1' ? m1 : undefined), lookup: async (id) => (id === 'm1' ? m1 : undefined), isLoaded: true, isUp: true };
    const p = new AttemptPipeline(
      { tier: 0, names, logger: silent, attemptLogger: silent, metrics: createWorkerMetrics({ role: 'tier', tier: '0' }, false), stopSignal: new AbortController().signal, gate, merchants, slots: new MerchantSlots(), failureMarks: null, history: null },
      { config: once, signer: createSigner(once.signing), merchantSigners: new MerchantSigners(once.signing), deliverer: slow },
    );
    const note = (id: string, merchant?: string): ConsumeMessage => {
      const m = message(0, { id, url: `https://${merchant ?? 'm'}.example/notify`, body: { a: 1 }, ...(merchant ? { merchant } : {}) });
      return { ...m, properties: { ...m.properties, messageId: id } } as ConsumeMessage;
    };
    const links = ['a', 'b', 'c'].map(() => new FakeLink());
    const a = p.handle(links[0]!, note('a'));
    // The origin is slow now (its one attempt held past queueTarget): its queue bound is 1.
    await new Promise((r) => setTimeout(r, 500));
    const b = p.handle(links[1]!, note('b'));
    await p.handle(links[2]!, note('c'));
    const parked = (l: FakeLink) => l.published.filter((x) => x.exchange === names.dead || x.routingKey === names.dead).length;
    assert.deepEqual(links[2]!.published.map((x) => x.routingKey), [names.holdQueue(0)], 'c deferred to the hold queue');
    assert.equal(parked(links[2]!), 0, 'not parked');
    // A merchant at its maxConcurrency (1): its second notification waits in the hold queue too.
    const m1a = p.handle(new FakeLink(), note('m1a', 'm1'));
    await new Promise((r) => setTimeout(r, 20));
    const capped = new FakeLink();
    await p.handle(capped, note('m1b', 'm1'));
    assert.deepEqual(capped.published.map((x) => x.routingKey), [names.holdQueue(0)], 'm1b deferred to the hold queue');
    release();
    await Promise.all([a, b, m1a]);
    assert.deepEqual(calls.sort(), ['a', 'b', 'm1a'], 'no request for the deferred ones yet');
    for (const l of links) assert.equal(parked(l), 0, 'none parked');
  });
});
