// Per-origin limits (AIMD + breaker) and the admission gate of a tier worker,
// driven by a fake clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OriginState, acquire, decide, release, signalOf, type OriginPolicy } from '../../src/delivery/origin-limiter.js';
import { OriginGate, type Admission, type GateOptions } from '../../src/tier/origin-gate.js';

const P: OriginPolicy = { maxConcurrency: 16, initialLimit: 4, failureThreshold: 3, probeIntervalMs: 1000, maxProbeIntervalMs: 4000 };

function run(s: OriginState, now: number): number {
  const d = decide(s, now);
  assert.ok(d === 'go' || d === 'probe', `expected room, got ${d}`);
  acquire(s, d, now);
  return now;
}

describe('origin limiter', () => {
  it('starts at the initial limit and says full at it', () => {
    const s = new OriginState(P, 0);
    for (let i = 0; i < 4; i++) run(s, 0);
    assert.equal(decide(s, 0), 'full');
  });

  it('grows while answers come and the limit is in use (slow start), not while it is idle', () => {
    const s = new OriginState(P, 0);
    const starts = [0, 1, 2, 3].map((t) => run(s, t));
    release(s, P, starts[0]!, 'success', 10, 20);
    assert.equal(s.limit, 5, 'in use: +1');
    const idle = new OriginState(P, 0);
    release(idle, P, run(idle, 0), 'success', 10, 20);
    assert.equal(idle.limit, 4, 'one in flight of 4 proves nothing');
    // Past ssthresh: about one per round trip.
    const c = new OriginState(P, 0);
    c.ssthresh = 4;
    for (let i = 0; i < 4; i++) run(c, 0);
    release(c, P, 0, 'success', 10, 10);
    assert.ok(c.limit > 4 && c.limit < 4.5, String(c.limit));
  });

  it('halves on overload at most once per round trip, and never below one', () => {
    const s = new OriginState(P, 0);
    s.limit = 16;
    for (let i = 0; i < 8; i++) run(s, 0);
    release(s, P, 0, 'overload', 100, 100);
    assert.equal(s.limit, 8);
    release(s, P, 0, 'overload', 100, 150);
    assert.equal(s.limit, 8, 'same round trip: no second cut');
    release(s, P, 0, 'overload', 100, 300);
    assert.equal(s.limit, 4);
    assert.equal(s.breaker, 'closed', 'overload is not failure');
  });

  it('opens after failureThreshold failures in a row: skip, then one probe after the interval', () => {
    const s = new OriginState(P, 0);
    for (let i = 0; i < 3; i++) release(s, P, run(s, i * 10), 'failure', 5000, i * 10 + 5000, 'TIMEOUT');
    assert.equal(s.breaker, 'open');
    assert.equal(s.lastError, 'TIMEOUT');
    assert.equal(decide(s, 5500), 'skip');
    assert.equal(decide(s, 6020), 'probe');
    acquire(s, 'probe', 6020);
    assert.equal(s.breaker, 'probing');
    assert.equal(decide(s, 6021), 'full', 'one probe at a time: the others wait for its answer');
  });

  it('a failed probe reopens with a doubled interval (capped); a good one closes with a limit of one that ramps up', () => {
    const s = new OriginState(P, 0);
    for (let i = 0; i < 3; i++) release(s, P, run(s, 0), 'failure', 10, 10);
    let t = s.nextProbeAt;
    assert.equal(t, 10 + 1000, 'first probe one interval after opening');
    for (const gap of [1000, 2000, 4000, 4000]) {
      acquire(s, 'probe', t);
      release(s, P, t, 'failure', 10, t + 10);
      assert.equal(s.nextProbeAt - (t + 10), gap);
      t = s.nextProbeAt;
    }
    acquire(s, 'probe', t);
    release(s, P, t, 'success', 10, t + 10);
    assert.equal(s.breaker, 'closed');
    assert.equal(s.limit, 1);
    assert.equal(s.probeIntervalMs, P.probeIntervalMs, 'backoff reset');
    // Ramp with a backlog (every freed slot is refilled at once): each answer while the
    // limit is full adds one, so it doubles per round trip: 1 → 2 → 4 → 8.
    let now = t + 20;
    let inflight = [run(s, now)];
    for (let round = 0; round < 3; round++) {
      const next: number[] = [];
      for (const st of inflight) {
        release(s, P, st, 'success', 10, now + 10);
        while (decide(s, now + 10) === 'go') next.push(run(s, now + 10));
      }
      inflight = next;
      now += 10;
    }
    assert.equal(s.limit, 8);
    assert.equal(inflight.length, 8);
  });

  it('a probe answered with 429 or 503 closes the breaker at one, growing one per round trip: the origin is up, only busy', () => {
    for (const status of [429, 503]) {
      const s = new OriginState(P, 0);
      for (let i = 0; i < 3; i++) release(s, P, run(s, 0), 'failure', 10, 10);
      const t = s.nextProbeAt;
      acquire(s, 'probe', t);
      release(s, P, t, signalOf({ kind: 'response', status }), 10, t + 10, `HTTP ${status}`);
      assert.deepEqual([s.breaker, s.limit, s.consecutiveFailures], ['closed', 1, 0], `after a ${status}`);
      assert.equal(decide(s, t + 10), 'go', 'the next attempt may start (before: left probing, full for ever)');
      // Past ssthresh at once: a busy origin gets one more at a time per round trip, not a doubling.
      run(s, t + 10);
      release(s, P, t + 10, 'success', 10, t + 20);
      assert.ok(s.limit > 1 && s.limit <= 2, String(s.limit));
    }
  });

  it('maps results to signals', () => {
    assert.equal(signalOf({ kind: 'response', status: 200 }), 'success');
    assert.equal(signalOf({ kind: 'response', status: 500 }), 'success', 'an answer means it is up');
    assert.equal(signalOf({ kind: 'response', status: 503 }), 'overload');
    assert.equal(signalOf({ kind: 'response', status: 429 }), 'overload');
    for (const code of ['TIMEOUT', 'HEADERS_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'DNS_TIMEOUT', 'DNS_NOTFOUND', 'UND_ERR_SOCKET', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED', 'EPROTO', 'HPE_INVALID_CONSTANT']) {
      assert.equal(signalOf({ kind: 'error', code }), 'failure', code);
    }
    assert.equal(signalOf({ kind: 'error', code: 'UND_ERR_INVALID_ARG' }), 'none');
    assert.equal(signalOf({ kind: 'error', code: 'DNS_BLOCKED' }), 'none', 'notifyd refused it: no request, nothing about the origin (and the last tier must park it blocked, not skip it)');
  });
});

class Clock {
  t = 1_000_000;
  now = (): number => this.t;
}

function gate(clock: Clock, over: Partial<GateOptions> = {}): OriginGate {
  return new OriginGate({ policy: P, concurrency: 8, queueTargetMs: 200, windowSpare: 0, maxOrigins: 100, idleMs: 60_000, now: clock.now, ...over });
}

const go = (a: Admission | Promise<Admission>): Extract<Admission, { kind: 'go' }> => {
  assert.ok(!(a instanceof Promise) && a.kind === 'go', `expected go, got ${a instanceof Promise ? 'a wait' : a.kind}`);
  return a;
};

describe('origin gate', () => {
  it('a healthy origin at its limit waits in memory and is served in order as slots free', async () => {
    const c = new Clock();
    const g = gate(c);
    const tickets = [0, 1, 2, 3].map(() => go(g.admit('https://a', 1000, true)));
    const w1 = g.admit('https://a', 1000, true);
    const w2 = g.admit('https://a', 1000, true);
    assert.ok(w1 instanceof Promise && w2 instanceof Promise);
    const order: number[] = [];
    void w1.then(() => order.push(1));
    void w2.then(() => order.push(2));
    tickets[0]!.release('success', 5);
    tickets[1]!.release('success', 5);
    const [a1, a2] = await Promise.all([w1, w2]);
    assert.deepEqual([a1.kind, a2.kind, order], ['go', 'go', [1, 2]]);
  });

  it('a slow origin keeps few in memory: the rest is deferred; waiting ones past the bound are deferred as its round trip grows, and skipped once their budget is spent', async () => {
    const c = new Clock();
    // Capped at 4 (no slow start to count on), so what it serves soon is 4 × 200 ms / round trip.
    const g = gate(c, { queueTargetMs: 200, policy: { ...P, maxConcurrency: 4 } });
    for (let i = 0; i < 4; i++) go(g.admit('https://slow', 5000, true));
    // Nothing answered yet, round trip unknown: optimistic, so some wait.
    const front = g.admit('https://slow', 5000, true);
    const back = g.admit('https://slow', 5000, true);
    assert.ok(front instanceof Promise && back instanceof Promise);
    c.t += 400; // the oldest attempt is now 400 ms old: 4 × 200 / 400 = 2 may wait
    const third = g.admit('https://slow', 5000, true);
    assert.equal(third instanceof Promise ? 'wait' : third.kind, 'defer');
    c.t += 1200; // 4 × 200 / 1600 rounds to 0: 1 may wait, so the back one goes
    g.tick();
    assert.equal((await back).kind, 'defer');
    c.t += 3500; // the front one's budget (5 s) is spent and its origin is still full
    g.tick();
    const f = await front;
    assert.ok(f.kind === 'skip' && f.reason === 'origin-saturated');
    const snap = g.worst(5)[0]!;
    assert.deepEqual([snap.origin, snap.state, snap.deferred, snap.skipped], ['https://slow', 'limited', 2, 1]);
  });

  it('a slow origin may wait in memory up to its fair share of the spare window, one share always left for origins not waiting yet', () => {
    const c = new Clock();
    const g = gate(c, { windowSpare: 12, queueTargetMs: 1 });
    // (queueTarget 1 ms: what a slow origin serves soon rounds to nothing, so only the share counts.)
    for (let i = 0; i < 4; i++) go(g.admit('https://slow', 5000, true));
    c.t += 1000; // slow: the round-trip rule alone would let one wait
    const kinds = Array.from({ length: 8 }, () => g.admit('https://slow', 5000, true)).map((a) => (a instanceof Promise ? 'wait' : a.kind));
    assert.deepEqual(kinds, ['wait', 'wait', 'wait', 'wait', 'wait', 'wait', 'defer', 'defer'], 'alone: 12 / (1 + 1) = 6 may wait');
    for (let i = 0; i < 4; i++) go(g.admit('https://other', 5000, true));
    c.t += 1000;
    const other = Array.from({ length: 5 }, () => g.admit('https://other', 5000, true)).map((a) => (a instanceof Promise ? 'wait' : a.kind));
    assert.deepEqual(other, ['wait', 'wait', 'wait', 'wait', 'defer'], 'two waiting: 12 / (2 + 1) = 4 each');
  });

  it('without a hold queue (canDefer false) a full origin past its bound is skipped as saturated', () => {
    const c = new Clock();
    const g = gate(c);
    for (let i = 0; i < 4; i++) go(g.admit('https://x', 1000, false));
    c.t += 10_000;
    assert.ok(g.admit('https://x', 1000, false) instanceof Promise, 'one may always wait');
    const a = g.admit('https://x', 1000, false);
    assert.ok(!(a instanceof Promise) && a.kind === 'skip' && a.reason === 'origin-saturated');
  });

  it('in slow start an origin is counted on to reach its ssthresh: a burst waits instead of being deferred', () => {
    const c = new Clock();
    const g = gate(c, { queueTargetMs: 100 });
    for (let i = 0; i < 4; i++) go(g.admit('https://new', 5000, true)).release('success', 10);
    for (let i = 0; i < 4; i++) go(g.admit('https://new', 5000, true));
    // Limit about 4-5 now, ssthresh 16: 16 × 100 / 10 ms = 160 may wait, not 4 × 100 / 10 = 40.
    const kinds = Array.from({ length: 100 }, () => g.admit('https://new', 5000, true)).map((a) => (a instanceof Promise ? 'wait' : a.kind));
    assert.ok(kinds.every((k) => k === 'wait' || k === 'go'), kinds.join(','));
  });

  it('a notification whose budget is spent waits for a slot if its origin is only at its limit, and is skipped if its origin is slow', async () => {
    const c = new Clock();
    const g = gate(c, { policy: { ...P, maxConcurrency: 4 } }); // queueTarget 200 ms; capped at 4, so no growth frees a slot
    const first = go(g.admit('https://y', 0, true));
    for (let i = 0; i < 3; i++) go(g.admit('https://y', 1000, true));
    // At its cap, its attempts 50 ms old: a slot frees soon, so skipping would only punish the merchant for the tier's load.
    c.t += 50;
    const soon = g.admit('https://y', -5, true);
    assert.ok(soon instanceof Promise, 'waits');
    first.release('success', 50);
    const s = await soon;
    assert.equal(s.kind, 'go');
    // Now its oldest attempt has taken queueTarget: it is slow, not only busy, and the spent budget means a skip.
    c.t += 150;
    const late = g.admit('https://y', -5, true);
    assert.ok(!(late instanceof Promise) && late.kind === 'skip' && late.reason === 'origin-saturated');
  });

  it('upkeep keeps a waiter past its budget while its origin is only at its cap, and skips it once the origin turns slow', async () => {
    const c = new Clock();
    const g = gate(c, { policy: { ...P, initialLimit: 2, maxConcurrency: 2 } });
    go(g.admit('https://z', 1000, true));
    go(g.admit('https://z', 1000, true));
    const w = g.admit('https://z', 100, true);
    assert.ok(w instanceof Promise);
    let settled: Admission | null = null;
    void w.then((a) => (settled = a));
    c.t += 150; // its budget (100 ms) is spent; the attempts ahead of it are 150 ms old, under queueTarget
    g.tick();
    await Promise.resolve();
    assert.equal(settled, null, 'still waiting');
    c.t += 60; // 210 ms: the origin now holds attempts past queueTarget
    g.tick();
    const a = await w;
    assert.ok(a.kind === 'skip' && a.reason === 'origin-saturated');
  });

  it('a waiter whose budget is spent is skipped, never deferred, when its queue is over the bound (back from the hold queue still spent, it would be cut again round after round); within the bound it keeps its place', async () => {
    const c = new Clock();
    const g = gate(c, { policy: { ...P, initialLimit: 2, maxConcurrency: 2 } });
    go(g.admit('https://q', 1000, true)).release('success', 100); // it answers in 100 ms
    const first = go(g.admit('https://q', 1000, true));
    const second = go(g.admit('https://q', 1000, true));
    const a = g.admit('https://q', 1000, true);
    const b = g.admit('https://q', 1000, true);
    // Back from the hold queue with its budget spent: the origin is only at its limit, so it waits, at the back.
    const late = g.admit('https://q', -5, true);
    assert.ok(a instanceof Promise && b instanceof Promise && late instanceof Promise);
    const settled: string[] = [];
    void b.then((x) => settled.push(`b:${x.kind}`));
    void late.then((x) => settled.push(`late:${x.kind}`));
    c.t += 150; // bound: 2 × 200 / 150 = 2 of the 3 waiting
    g.tick();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(settled, ['late:skip'], 'the spent one over the bound moves down the ladder; the others keep their places');
    // A spent arrival finds the queue at its bound (2): skipped at once, not queued past it.
    const over = g.admit('https://q', -5, true);
    assert.ok(!(over instanceof Promise) && over.kind === 'skip' && over.reason === 'origin-saturated');
    first.release('success', 150);
    assert.equal((await a).kind, 'go');
    second.release('success', 150);
    assert.equal((await b).kind, 'go');
  });

  it('a failing origin: waiters and new arrivals are skipped, one probe later; other origins are untouched', async () => {
    const c = new Clock();
    const g = gate(c);
    const t = [0, 1, 2, 3].map(() => go(g.admit('https://dead', 10_000, true)));
    const waiter = g.admit('https://dead', 10_000, true);
    for (const x of t.slice(0, 3)) x.release('failure', 5000, 'TIMEOUT');
    const w = await waiter;
    assert.ok(w.kind === 'skip' && w.reason === 'origin-failing' && w.lastError === 'TIMEOUT');
    const next = g.admit('https://dead', 10_000, true);
    assert.ok(!(next instanceof Promise) && next.kind === 'skip' && next.reason === 'origin-failing');
    go(g.admit('https://healthy', 10_000, true));
    t[3]!.release('failure', 5000);
    c.t += 1001;
    const probe = go(g.admit('https://dead', 10_000, true));
    assert.equal(probe.probe, true);
    assert.deepEqual(g.counts(), { failing: 1, limited: 0 });
    probe.release('success', 20);
    assert.deepEqual(g.counts().failing, 0);
    assert.equal(g.worst(5).find((o) => o.origin === 'https://dead')!.limit, 1, 'back from one');
  });

  it('an origin skipped while its breaker stays open longer than idleMs between probes is not forgotten (and not back at its initial limit)', () => {
    const c = new Clock();
    const g = gate(c, { idleMs: 1000, policy: { ...P, maxProbeIntervalMs: 300_000 } });
    const t = [0, 1, 2].map(() => go(g.admit('https://dead', 10_000, true)));
    for (const x of t) x.release('failure', 50, 'ECONNREFUSED');
    for (let i = 0; i < 5; i++) {
      // Each probe fails: the interval doubles (1, 2, 4, 8, 16 s), past idleMs.
      c.t += 300_000;
      go(g.admit('https://dead', 10_000, true)).release('failure', 50, 'ECONNREFUSED');
    }
    for (let i = 0; i < 20; i++) {
      c.t += 500;
      const a = g.admit('https://dead', 10_000, true);
      assert.ok(!(a instanceof Promise) && a.kind === 'skip' && a.reason === 'origin-failing', `skipped at ${i}: ${JSON.stringify(a)}`);
      g.tick();
    }
    assert.equal(g.counts().failing, 1, 'still failing, still shown');
  });

  it('a waiter skipped while its origin probes is skipped for failing, not saturation', async () => {
    const c = new Clock();
    const g = gate(c);
    for (const x of [0, 1, 2].map(() => go(g.admit('https://p', 10_000, true)))) x.release('failure', 50, 'TIMEOUT');
    c.t += 1001;
    const probe = go(g.admit('https://p', 10_000, true));
    assert.equal(probe.probe, true);
    const late = g.admit('https://p', 0, true);
    const a = late instanceof Promise ? await late : late;
    assert.ok(a.kind === 'skip' && a.reason === 'origin-failing', JSON.stringify(a));
  });

  it('the tier-wide cap: others wait without a deadline and are served in turn across origins', async () => {
    const c = new Clock();
    const g = gate(c, { concurrency: 2 });
    const a = go(g.admit('https://a', 1000, true));
    const b = go(g.admit('https://b', 1000, true));
    const wa = g.admit('https://a', 1000, true);
    const wc = g.admit('https://c', 1000, true);
    assert.ok(wa instanceof Promise && wc instanceof Promise);
    c.t += 5000; // long past their budgets: the tier is busy, not their origins
    g.tick();
    b.release('success', 5);
    const first = await Promise.race([wa.then(() => 'a'), wc.then(() => 'c')]);
    assert.equal(first, 'a', 'served in arrival order of their origins');
    a.release('success', 5);
    assert.equal((await wc).kind, 'go');
  });

  it('requeueAll gives every waiter back unattempted', async () => {
    const c = new Clock();
    const g = gate(c, { concurrency: 1 });
    go(g.admit('https://a', 1000, true));
    const w = g.admit('https://b', 1000, true);
    g.requeueAll();
    assert.equal((await w).kind, 'requeue');
  });

  it('forgets idle origins and keeps at most maxOrigins', () => {
    const c = new Clock();
    const g = gate(c, { maxOrigins: 20, idleMs: 1000 });
    for (let i = 0; i < 50; i++) go(g.admit(`https://m${i}`, 1000, true)).release('success', 1);
    g.tick();
    assert.ok(g.worst(100).length === 0);
    for (let i = 0; i < 50; i++) go(g.admit(`https://n${i}`, 1000, true)).release('failure', 1, 'ECONNREFUSED');
    g.tick();
    assert.ok(g.worst(100).length <= 20, String(g.worst(100).length));
    c.t += 2000;
    g.tick();
    assert.equal(g.worst(100).length, 0);
  });

  it('wakes its owner when it starts tracking an origin, and is idle once it has forgotten the last one', async () => {
    const c = new Clock();
    let wakes = 0;
    const g = new OriginGate({ policy: P, concurrency: 8, queueTargetMs: 200, windowSpare: 0, maxOrigins: 100, idleMs: 1000, now: c.now }, () => wakes++);
    assert.equal(g.idle, true);
    const a = go(g.admit('https://a', 1000, true));
    assert.equal(wakes, 1);
    assert.equal(g.idle, false);
    go(g.admit('https://b', 1000, true)).release('success', 1);
    assert.equal(wakes, 1, 'a second origin while one is tracked wakes no one');
    c.t += 2000;
    g.tick();
    assert.equal(g.idle, false, 'an origin with an attempt in flight is kept');
    a.release('success', 1);
    c.t += 2000;
    g.tick();
    assert.equal(g.idle, true);
    // A waiter keeps it tracked with nothing of its own in flight: here one held back only by the
    // tier-wide cap (another origin fills it), with no deadline, so only a release can serve it.
    const g2 = new OriginGate({ policy: P, concurrency: 1, queueTargetMs: 200, windowSpare: 0, maxOrigins: 100, idleMs: 1000, now: c.now }, () => wakes++);
    const filler = go(g2.admit('https://fill', 1000, true));
    assert.equal(wakes, 2);
    const waiting = g2.admit('https://waits', Infinity, true);
    assert.ok(waiting instanceof Promise);
    // Past idleMs: the waiting origin must not be forgotten (its waiter is served from its state).
    c.t += 5000;
    g2.tick();
    assert.ok(g2.worst(10).some((o) => o.origin === 'https://waits' && o.waiting === 1), JSON.stringify(g2.worst(10)));
    filler.release('success', 1);
    const served = await waiting;
    assert.equal(served.kind, 'go');
    c.t += 5000;
    g2.tick();
    assert.equal(g2.idle, false, 'the served origin has an attempt in flight');
    if (served.kind === 'go') served.release('success', 1);
    c.t += 2000;
    g2.tick();
    assert.equal(g2.idle, true);
  });

  /** Opens `origin`'s breaker (three failures) and moves the clock past its first probe interval. */
  function openOrigin(c: Clock, g: OriginGate, origin: string): void {
    for (let i = 0; i < 3; i++) go(g.admit(origin, 1000, true)).release('failure', 10, 'TIMEOUT');
    assert.equal(g.worst(10).find((o) => o.origin === origin)?.state, 'failing');
    c.t += P.probeIntervalMs + 1;
  }

  const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

  it('a due probe held back only by the tier-wide cap starts when a slot frees', async () => {
    const c = new Clock();
    const g = gate(c, { concurrency: 1 });
    openOrigin(c, g, 'https://down');
    const other = go(g.admit('https://up', 1000, true));
    const probe = g.admit('https://down', Infinity, true);
    assert.ok(probe instanceof Promise, 'the tier is at its cap: it waits');
    let got: Admission | undefined;
    void probe.then((a) => (got = a));
    other.release('success', 5);
    await settle();
    assert.ok(got?.kind === 'go' && got.probe, `the probe started (before: ${got?.kind ?? 'never'})`);
    // And again when the slot is freed by an attempt that says nothing about its origin.
    if (got?.kind === 'go') got.release('success', 5);
    openOrigin(c, g, 'https://down2');
    const filler = go(g.admit('https://up', 1000, true));
    const probe2 = g.admit('https://down2', Infinity, true);
    assert.ok(probe2 instanceof Promise);
    filler.release('none', 0);
    const p2 = await probe2;
    assert.ok(p2.kind === 'go' && p2.probe);
  });

  it('waiters behind a probe answered with 503 are served (on the last tier they have no deadline to end their wait)', async () => {
    const c = new Clock();
    const g = gate(c);
    openOrigin(c, g, 'https://busy');
    const probe = go(g.admit('https://busy', Infinity, false));
    assert.ok(probe.probe);
    const waiters = [g.admit('https://busy', Infinity, false), g.admit('https://busy', Infinity, false)];
    assert.ok(waiters.every((w) => w instanceof Promise), 'one probe at a time: the others wait for its answer');
    probe.release('overload', 10, 'HTTP 503');
    const first = await waiters[0]!;
    assert.ok(first.kind === 'go' && !first.probe, 'closed at a limit of one: the first waiter goes');
    for (let i = 0; i < 10; i++) {
      c.t += 100;
      g.tick();
    }
    let second: Admission | undefined;
    void waiters[1]!.then((a) => (second = a));
    const seen = (): Admission | undefined => second;
    await settle();
    assert.equal(seen(), undefined, 'the second waits for the one slot');
    if (first.kind === 'go') first.release('success', 10);
    await settle();
    assert.equal(seen()?.kind, 'go');
  });

  it('a probe that says nothing (no request made) hands the probe to the next waiter instead of skipping them all', async () => {
    const c = new Clock();
    const g = gate(c);
    openOrigin(c, g, 'https://quiet');
    const probe = go(g.admit('https://quiet', 5000, true));
    const waiter = g.admit('https://quiet', 5000, true);
    assert.ok(waiter instanceof Promise);
    probe.release('none', 0);
    const next = await waiter;
    assert.ok(next.kind === 'go' && next.probe, `the next waiter is the probe, not skipped (got ${next.kind})`);
  });
});
