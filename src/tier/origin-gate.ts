/**
 * Admission of attempts in one tier worker, per origin, so that one slow or
 * dead merchant holds no more than its own share of the tier.
 *
 * The tier's AMQP prefetch is its window; `concurrency` caps the HTTP
 * attempts in flight in it; each origin's `OriginState` caps its own. A
 * notification for an origin at its limit may wait here, in memory, but only
 * as long as the origin is expected to serve it soon: at most
 * `limit × queueTarget / roundTrip` of them per origin (the round trip being
 * the smoothed one, or the age of the oldest attempt in flight when that is
 * longer). Past that it is deferred: handed to the tier's hold queue in the
 * broker, out of the window, to come back later. A failing origin's
 * notifications are skipped (except its probes). And once a notification has
 * waited for its origin as long as its wait budget (its next delay, counted
 * from its arrival in the tier), it is attempted if its origin has room or
 * frees a slot soon (only at its limit, answering within `queueTarget`, its
 * queue within the bound: then it waits in memory, never deferred again),
 * else skipped: it moves down the ladder, never waits forever.
 */
import { acquire, decide, release, OriginState, type OriginPolicy, type OriginSignal, type OriginSnapshot } from '../delivery/origin-limiter.js';
import type { SkipReason } from '../delivery/outcome.js';
import type { Config } from '../core/config.js';

/** What happens to one notification. */
export type Admission =
  /** Make the attempt; `release` once it is over (exactly once). */
  | { readonly kind: 'go'; readonly probe: boolean; release(signal: OriginSignal, rttMs: number, error?: string): void }
  /** Hand it to the hold queue: it comes back later. Not an attempt. */
  | { readonly kind: 'defer' }
  /** Count the attempt as made without a request, and move it down the ladder. */
  | { readonly kind: 'skip'; readonly reason: SkipReason; readonly lastError: string | null }
  /** The worker stops: give it back to its queue unattempted. */
  | { readonly kind: 'requeue' };

export interface GateOptions {
  readonly policy: OriginPolicy;
  /** HTTP attempts in flight in this tier worker, all origins together. */
  readonly concurrency: number;
  /** How long a notification is expected to wait in memory for its origin, at most. */
  readonly queueTargetMs: number;
  /**
   * Room in the window beyond the attempts in flight (prefetch −
   * concurrency): notifications may wait in memory up to a fair share of it
   * per origin, whatever their origin's round trip.
   */
  readonly windowSpare: number;
  /** Origin states kept (idle ones go first). */
  readonly maxOrigins: number;
  /** An origin unused this long is forgotten. */
  readonly idleMs: number;
  readonly now?: () => number;
}

/** The gate's settings from the config. */
export function gateOptionsOf(c: Config): GateOptions {
  const o = c.delivery.perOrigin;
  return {
    policy: { maxConcurrency: o.maxConcurrency, initialLimit: o.initialLimit, failureThreshold: o.failureThreshold, probeIntervalMs: o.probeIntervalMs, maxProbeIntervalMs: o.maxProbeIntervalMs },
    concurrency: c.delivery.concurrency,
    queueTargetMs: o.queueTargetMs,
    windowSpare: Math.max(0, c.delivery.prefetch - c.delivery.concurrency),
    maxOrigins: o.maxOrigins,
    idleMs: Math.max(60_000, o.poolIdleMs),
  };
}

interface Waiter {
  readonly origin: string;
  readonly deadline: number;
  readonly canDefer: boolean;
  readonly resolve: (a: Admission) => void;
}

/** An origin that deferred within this long counts as limited. */
const RECENT_MS = 10_000;

export class OriginGate {
  private readonly states = new Map<string, OriginState>();
  private readonly queues = new Map<string, Waiter[]>();
  /** Origins with waiters and room of their own, held back by the tier-wide cap; served in turn. */
  private readonly ready = new Set<string>();
  private inflight = 0;
  private readonly now: () => number;
  private opts: GateOptions;

  /**
   * @param wake called when the gate starts tracking an origin while it
   *   tracked none: its owner runs `tick()` from then until `idle` is true
   *   again, so a tier with no traffic has no timer waking it.
   */
  constructor(opts: GateOptions, private readonly wake: () => void = () => undefined) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
  }

  /** Nothing tracked: no origin state, so nothing waiting, in flight or to forget; `tick()` has nothing to do. */
  get idle(): boolean {
    return this.states.size === 0;
  }

  /** New limits apply from the next decision (a reload). */
  configure(opts: GateOptions): void {
    this.opts = opts;
  }

  get inflightCount(): number {
    return this.inflight;
  }

  private state(origin: string, now: number): OriginState {
    let s = this.states.get(origin);
    if (s === undefined) {
      s = new OriginState(this.opts.policy, now);
      this.states.set(origin, s);
      if (this.states.size === 1) this.wake();
    }
    return s;
  }

  /**
   * Admits one notification for `origin`. `budgetLeftMs` is how much longer
   * it may wait (0 or less: attempt now or skip); `canDefer` says whether the
   * tier has a hold queue. Synchronous when it can be decided at once.
   */
  admit(origin: string, budgetLeftMs: number, canDefer: boolean): Admission | Promise<Admission> {
    const now = this.now();
    const s = this.state(origin, now);
    const d = decide(s, now);
    if (d === 'skip') return this.skip(s);
    const queue = this.queues.get(origin);
    const roomHere = d === 'go' || d === 'probe';
    if (roomHere && this.inflight < this.opts.concurrency && (queue === undefined || queue.length === 0)) {
      return this.start(origin, s, d, now);
    }
    if (budgetLeftMs <= 0) {
      // Its wait is over: a free slot, or one soon from an origin that is only at its limit and will get to it
      // within queueTarget (its queue within the bound: a merchant answering 429s at a limit of 1 must not fill the window).
      const waits = roomHere || (this.answersSoon(s, now) && (queue?.length ?? 0) < this.queueBound(origin, s, now));
      return waits ? this.waitFor(origin, s, now, canDefer) : this.skip(s, 'origin-saturated');
    }
    if (!roomHere && (queue?.length ?? 0) >= this.queueBound(origin, s, now)) {
      if (canDefer) return this.defer(s, now);
      return this.skip(s, 'origin-saturated');
    }
    return this.waitFor(origin, s, now + budgetLeftMs, canDefer);
  }

  private waitFor(origin: string, s: OriginState, deadline: number, canDefer: boolean): Promise<Admission> {
    return new Promise((resolve) => {
      let q = this.queues.get(origin);
      if (q === undefined) this.queues.set(origin, (q = []));
      q.push({ origin, deadline, canDefer, resolve });
      s.waiting++;
      // A probe that is due is room too: with the tier at its cap and nothing of this origin in flight, no release
      // of its own would ever put it in line.
      const d = decide(s, this.now());
      if (d === 'go' || d === 'probe') this.ready.add(origin);
    });
  }

  /**
   * The origin is only at its limit, not slow: its breaker is closed and none
   * of its attempts in flight has taken `queueTarget` yet, so a slot frees
   * within about that. A notification whose wait budget is spent keeps
   * waiting for it rather than being skipped: the tier's own load (a burst,
   * a starved event loop) is no fault of the merchant's, and a skip would
   * send the notification down the ladder without a request to a merchant
   * that answers. Waiting stays bounded: it waits only while its origin's
   * queue is within the bound (`queueBound`: what the origin serves within
   * `queueTarget`, or its share of the window), past that it is skipped,
   * never deferred (it would come back still past its budget). "At its
   * limit" is the adaptive one: a merchant answering 429 or 503 quickly, or
   * ramping up after a probe, is waited for too (it answers; it only asks
   * for fewer at once).
   */
  private answersSoon(s: OriginState, now: number): boolean {
    return s.breaker === 'closed' && s.oldestInflightAge(now) < this.opts.queueTargetMs;
  }

  /**
   * How many may wait in memory for this origin: those it is expected to
   * serve within `queueTarget`, or else its fair share of the window's spare
   * room. The share counts one place more than the origins waiting now, so
   * there is always room left for an origin that is not waiting yet: a slow
   * merchant can hold no more than that, however long its queue.
   */
  private queueBound(origin: string, s: OriginState, now: number): number {
    const roundTrip = Math.max(s.rttMs, s.oldestInflightAge(now), 1);
    // In slow start the limit is on its way to ssthresh within a few round trips: count on that.
    const capacity = s.breaker === 'closed' ? Math.max(Math.floor(s.limit), Math.min(this.opts.policy.maxConcurrency, Math.floor(s.ssthresh))) : 1;
    const served = Math.floor((capacity * this.opts.queueTargetMs) / roundTrip);
    const waitingOrigins = this.queues.size + (this.queues.has(origin) ? 0 : 1);
    const share = Math.floor(this.opts.windowSpare / (waitingOrigins + 1));
    return Math.max(1, served, share);
  }

  private skip(s: OriginState, reason: SkipReason = 'origin-saturated'): Admission {
    s.skipped++;
    // Traffic skipped is traffic: an origin whose breaker stays open longer than idleMs between probes
    // (maxProbeInterval above it) must not be forgotten meanwhile, and come back closed at its initial limit.
    s.lastUsedAt = this.now();
    // An origin whose breaker is not closed (open, or probing) is skipped for failing, whatever else holds it back.
    return { kind: 'skip', reason: s.breaker === 'closed' ? reason : 'origin-failing', lastError: s.lastError };
  }

  private defer(s: OriginState, now: number): Admission {
    s.deferred++;
    s.lastDeferredAt = now;
    return { kind: 'defer' };
  }

  private start(origin: string, s: OriginState, d: 'go' | 'probe', now: number): Admission {
    acquire(s, d, now);
    this.inflight++;
    let done = false;
    return {
      kind: 'go',
      probe: d === 'probe',
      release: (signal, rttMs, error) => {
        if (done) return;
        done = true;
        this.inflight--;
        const wasOpen = s.breaker;
        release(s, this.opts.policy, now, signal, rttMs, this.now(), error);
        // A breaker that just opened on a failure: nobody waits for a failing origin. (A probe that said nothing
        // reopens it with its probe still due: the next waiter is the next probe.)
        if (signal === 'failure' && s.breaker === 'open' && wasOpen !== 'open') this.drainQueue(origin, s, (w) => (w.resolve(this.skip(s, 'origin-failing')), true));
        this.pump(origin);
      },
    };
  }

  /** Starts waiting attempts while there is room: the released origin's own first, then the others in turn. */
  private pump(released?: string): void {
    const now = this.now();
    if (released !== undefined && this.queues.get(released)?.length) this.ready.add(released);
    while (this.inflight < this.opts.concurrency && this.ready.size > 0) {
      const origin = this.ready.values().next().value as string;
      this.ready.delete(origin);
      const q = this.queues.get(origin);
      const s = this.states.get(origin);
      if (!q || q.length === 0 || !s) continue;
      const d = decide(s, now);
      if (d === 'skip') {
        this.drainQueue(origin, s, (w) => (w.resolve(this.skip(s)), true));
        continue;
      }
      if (d === 'full') continue; // back in the ready set when one of its own finishes
      const w = q.shift()!;
      s.waiting--;
      if (q.length === 0) this.queues.delete(origin);
      w.resolve(this.start(origin, s, d, now));
      // Round robin: it goes to the back of the line if it still has waiters and room.
      if (q.length > 0 && decide(s, now) === 'go') this.ready.add(origin);
    }
  }

  /** Resolves queued waiters of an origin for which `take` says so, keeping the rest in order. */
  private drainQueue(origin: string, s: OriginState, take: (w: Waiter) => boolean): void {
    const q = this.queues.get(origin);
    if (!q) return;
    const keep: Waiter[] = [];
    for (const w of q) {
      if (take(w)) s.waiting--;
      else keep.push(w);
    }
    if (keep.length === 0) {
      this.queues.delete(origin);
      this.ready.delete(origin);
    } else {
      this.queues.set(origin, keep);
    }
  }

  /**
   * Periodic upkeep (every ~100 ms): waiters whose budget ran out are
   * skipped, unless their origin has room and only the tier-wide cap holds
   * them, or it is only at its limit (`answersSoon`) and their queue within
   * its bound: then they keep waiting, the tier being busy is no fault of
   * the merchant's; queues longer than their bound (the round trip grew) are
   * cut from the back, deferring (skipping those past their budget); idle
   * origin states are forgotten.
   */
  tick(): void {
    const now = this.now();
    for (const [origin, q] of [...this.queues]) {
      const s = this.states.get(origin)!;
      const d = decide(s, now);
      if (d === 'skip') {
        this.drainQueue(origin, s, (w) => (w.resolve(this.skip(s)), true));
        continue;
      }
      const bound = this.queueBound(origin, s, now);
      const room = d !== 'full';
      const soon = room || this.answersSoon(s, now);
      let over = q.length - bound;
      // Cut from the back: the newest wait longest anyway. One whose budget is spent is skipped, never deferred: it
      // would come back from the hold queue still spent, join at the back and be cut again, round after round.
      for (let i = q.length - 1; i >= 0; i--) {
        const w = q[i]!;
        const spent = now >= w.deadline;
        if (spent && (!soon || (!room && over > 0))) {
          q.splice(i, 1);
          s.waiting--;
          w.resolve(this.skip(s, 'origin-saturated'));
          over--;
        } else if (!spent && !room && over > 0 && w.canDefer) {
          q.splice(i, 1);
          s.waiting--;
          w.resolve(this.defer(s, now));
          over--;
        }
      }
      if (q.length === 0) {
        this.queues.delete(origin);
        this.ready.delete(origin);
      } else if (room) {
        // Back in line whatever put it there or not: a waiter with room must never depend on an event to be served.
        // (Defensive: no path is known to need it since waitFor counts a due probe as room; a missed one costs a tick.)
        this.ready.add(origin);
      }
    }
    this.pump();
    this.forgetIdle(now);
  }

  private forgetIdle(now: number): void {
    const idle = (s: OriginState): boolean => s.inflight === 0 && s.waiting === 0;
    for (const [origin, s] of this.states) {
      if (idle(s) && now - s.lastUsedAt > this.opts.idleMs) this.states.delete(origin);
    }
    if (this.states.size <= this.opts.maxOrigins) return;
    // Over the cap: the idle ones used longest ago go first.
    const victims = [...this.states].filter(([, s]) => idle(s)).sort(([, a], [, b]) => a.lastUsedAt - b.lastUsedAt);
    for (const [origin] of victims.slice(0, this.states.size - this.opts.maxOrigins)) this.states.delete(origin);
  }

  /** Gives every waiter back (the worker drains): they were never attempted. */
  requeueAll(): void {
    for (const [origin, q] of [...this.queues]) {
      const s = this.states.get(origin)!;
      for (const w of q) {
        s.waiting--;
        w.resolve({ kind: 'requeue' });
      }
      this.queues.delete(origin);
    }
    this.ready.clear();
  }

  private stateOf(s: OriginState, now: number): OriginSnapshot['state'] {
    if (s.breaker !== 'closed') return 'failing';
    const recentlyDeferred = now - s.lastDeferredAt < RECENT_MS;
    const cutByErrors = s.limit < this.opts.policy.maxConcurrency / 2 && now - s.lastErrorAt < RECENT_MS;
    if (s.waiting > 0 || recentlyDeferred || cutByErrors) return 'limited';
    return 'ok';
  }

  /** Counts of origins by state, for the gauges. */
  counts(): { failing: number; limited: number } {
    const now = this.now();
    let failing = 0;
    let limited = 0;
    for (const s of this.states.values()) {
      const st = this.stateOf(s, now);
      if (st === 'failing') failing++;
      else if (st === 'limited') limited++;
    }
    return { failing, limited };
  }

  /** The `n` worst origins: failing first, then those with the most waiting and deferred, then errors. */
  worst(n: number): OriginSnapshot[] {
    const now = this.now();
    const rank = { failing: 0, limited: 1, ok: 2 } as const;
    return [...this.states]
      .map(([origin, s]) => ({ origin, s, st: this.stateOf(s, now) }))
      .filter((x) => x.st !== 'ok' || x.s.lastError !== null)
      .sort((a, b) => rank[a.st] - rank[b.st] || b.s.waiting - a.s.waiting || b.s.deferred + b.s.skipped - (a.s.deferred + a.s.skipped) || b.s.lastErrorAt - a.s.lastErrorAt)
      .slice(0, n)
      .map(({ origin, s, st }) => ({
        origin,
        state: st,
        limit: Math.floor(s.limit),
        inflight: s.inflight,
        waiting: s.waiting,
        deferred: s.deferred,
        skipped: s.skipped,
        consecutiveFailures: s.consecutiveFailures,
        lastError: s.lastError,
        lastErrorAt: s.lastError === null ? null : s.lastErrorAt,
        nextProbeInMs: s.breaker === 'open' ? Math.max(0, s.nextProbeAt - now) : null,
        rttMs: Math.round(s.rttMs),
      }));
  }
}
