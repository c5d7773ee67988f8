/**
 * How many attempts one origin (scheme + host + port) may have in flight,
 * learned from how it answers. Pure: no timers, no I/O; callers pass `now`.
 *
 * The limit is AIMD, as TCP's congestion window and Netflix's
 * concurrency-limits `AIMDLimit` do:
 * - it grows while the origin answers and the limit is actually in use: by
 *   one per answer below `ssthresh` (slow start: doubling per round trip),
 *   then by about one per round trip;
 * - it halves, at most once per round trip, on a sign of overload (429, 503)
 *   or failure (timeouts, refused or reset connections, DNS failures);
 * - after `failureThreshold` failures in a row the origin is *failing*: the
 *   breaker opens, attempts for it are skipped except one probe after
 *   `probeInterval` (doubling up to `maxProbeInterval` while probes fail); a
 *   probe that gets an answer closes the breaker with a limit of one, from
 *   which it ramps up again (slowly after a 429 or 503), so a recovering
 *   merchant sees no storm.
 *
 * A latency-gradient limit (Netflix's Gradient2) was not used: a merchant
 * that is always slow keeps its own baseline, so its limit would not fall,
 * and what protects the other origins from a slow one is the cap plus the
 * bound on how long a notification may wait in memory (see the origin gate).
 */

/** What an attempt said about its origin. */
export type OriginSignal = 'success' | 'overload' | 'failure' | 'none';

/** closed: normal; open: failing, attempts skipped; probing: one probe in flight. */
export type BreakerState = 'closed' | 'open' | 'probing';

/** The knobs (from `delivery.perOrigin.*`). */
export interface OriginPolicy {
  /** Hard cap on the limit. */
  readonly maxConcurrency: number;
  /** Limit of an origin never seen before. */
  readonly initialLimit: number;
  /** Failures in a row that open the breaker. */
  readonly failureThreshold: number;
  readonly probeIntervalMs: number;
  readonly maxProbeIntervalMs: number;
}

/** One origin's learned state. */
export class OriginState {
  limit: number;
  /** Below it the limit grows by one per answer (slow start). */
  ssthresh: number;
  inflight = 0;
  /** Start times of the attempts in flight (their age bounds the round trip from below). */
  readonly starts: number[] = [];
  consecutiveFailures = 0;
  breaker: BreakerState = 'closed';
  nextProbeAt = 0;
  probeIntervalMs: number;
  /** Smoothed round trip of answered attempts (0 = none yet). */
  rttMs = 0;
  lastDecreaseAt = -Infinity;
  lastError: string | null = null;
  lastErrorAt = 0;
  lastUsedAt: number;
  /** Notifications waiting in memory for this origin (kept by the gate). */
  waiting = 0;
  /** Cumulative counts, for operators. */
  deferred = 0;
  skipped = 0;
  lastDeferredAt = 0;

  constructor(policy: OriginPolicy, now: number) {
    this.limit = Math.min(policy.initialLimit, policy.maxConcurrency);
    this.ssthresh = policy.maxConcurrency;
    this.probeIntervalMs = policy.probeIntervalMs;
    this.lastUsedAt = now;
  }

  /** Age of the oldest attempt in flight, 0 when none. */
  oldestInflightAge(now: number): number {
    let oldest = Infinity;
    for (const s of this.starts) if (s < oldest) oldest = s;
    return oldest === Infinity ? 0 : now - oldest;
  }
}

/** One origin as operators see it (`GET /admin/origins`). */
export interface OriginSnapshot {
  readonly origin: string;
  readonly state: 'failing' | 'limited' | 'ok';
  readonly limit: number;
  readonly inflight: number;
  readonly waiting: number;
  readonly deferred: number;
  readonly skipped: number;
  readonly consecutiveFailures: number;
  readonly lastError: string | null;
  readonly lastErrorAt: number | null;
  readonly nextProbeInMs: number | null;
  readonly rttMs: number;
}

/** Whether an attempt may start now. */
export type Decision = 'go' | 'probe' | 'full' | 'skip';

/**
 * Pure decision for one attempt: `go` (under the limit), `probe` (failing,
 * but a probe is due), `full` (at the limit, or a probe is under way: wait or
 * defer, the probe's answer decides for them), `skip` (failing).
 */
export function decide(s: OriginState, now: number): Decision {
  switch (s.breaker) {
    case 'open':
      return now >= s.nextProbeAt && s.inflight === 0 ? 'probe' : 'skip';
    case 'probing':
      return 'full';
    case 'closed':
      return s.inflight < Math.floor(s.limit) ? 'go' : 'full';
  }
}

/** Records an attempt starting (after `go` or `probe`). */
export function acquire(s: OriginState, decision: 'go' | 'probe', now: number): void {
  if (decision === 'probe') s.breaker = 'probing';
  s.inflight++;
  s.starts.push(now);
  s.lastUsedAt = now;
}

/**
 * Records an attempt that started at `startedAt` finishing with `signal`,
 * after `rttMs`. `error` is kept for operators.
 */
export function release(s: OriginState, p: OriginPolicy, startedAt: number, signal: OriginSignal, rttMs: number, now: number, error?: string): void {
  s.inflight = Math.max(0, s.inflight - 1);
  const i = s.starts.indexOf(startedAt);
  if (i >= 0) s.starts.splice(i, 1);
  s.lastUsedAt = now;
  if (signal === 'none') {
    // Not about the origin (e.g. a request notifyd refused to make): a probe that says nothing reopens.
    if (s.breaker === 'probing') s.breaker = 'open';
    return;
  }
  s.rttMs = s.rttMs === 0 ? rttMs : s.rttMs * 0.8 + rttMs * 0.2;
  if (signal !== 'success') {
    s.lastError = error ?? signal;
    s.lastErrorAt = now;
  }
  if (s.breaker === 'probing' && signal === 'overload') {
    // The probe got an answer, so the origin is up, only busy: closed at one, growing one per round trip. Left
    // probing, with nothing in flight no other probe would ever start and its notifications would wait for nothing.
    s.consecutiveFailures = 0;
    s.probeIntervalMs = p.probeIntervalMs;
    s.breaker = 'closed';
    s.limit = 1;
    s.ssthresh = 1;
    s.lastDecreaseAt = now;
    return;
  }
  if (signal === 'success') {
    s.consecutiveFailures = 0;
    s.probeIntervalMs = p.probeIntervalMs;
    if (s.breaker === 'probing') {
      // Back, but from one: its backlog drains at the pace it answers.
      s.breaker = 'closed';
      s.limit = 1;
      s.ssthresh = p.maxConcurrency;
      return;
    }
    // Grow only when the limit was in use: an origin with little traffic proves nothing.
    if (s.inflight + 1 >= Math.floor(s.limit)) {
      s.limit = Math.min(p.maxConcurrency, s.limit + (s.limit < s.ssthresh ? 1 : 1 / s.limit));
    }
    return;
  }
  // At most one decrease per round trip: the answers of one window all say the same thing.
  if (now - s.lastDecreaseAt >= Math.max(s.rttMs, 1)) {
    s.limit = Math.max(1, s.limit / 2);
    s.ssthresh = Math.max(1, s.limit);
    s.lastDecreaseAt = now;
  }
  if (signal === 'overload') return;
  s.consecutiveFailures++;
  if (s.breaker === 'probing' || s.consecutiveFailures >= p.failureThreshold) {
    const wasProbing = s.breaker === 'probing';
    s.breaker = 'open';
    s.limit = 1;
    s.nextProbeAt = now + s.probeIntervalMs;
    if (wasProbing) s.probeIntervalMs = Math.min(p.maxProbeIntervalMs, s.probeIntervalMs * 2);
  }
}

/** Transport error codes that say the origin is not answering. */
const FAILURE_CODES = new Set([
  'TIMEOUT',
  'CONNECT_TIMEOUT',
  'HEADERS_TIMEOUT',
  'BODY_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'DNS_NOTFOUND',
  'DNS_TIMEOUT',
  'DNS_FAILURE',
  // TLS to a port that speaks plain HTTP (wrong version number).
  'EPROTO',
  'ECONNABORTED',
]);

/**
 * Pure: what an attempt's result says about its origin. Any HTTP answer
 * means it is up (a 500 answered quickly costs its neighbours nothing);
 * 429 and 503 say it is overloaded; no answer at all, or one that is not
 * HTTP, is a failure; other errors (a request refused before it was sent)
 * say nothing. `DNS_BLOCKED` (a name that resolves only to refused
 * addresses) is notifyd's refusal, not the origin's failure, and costs no
 * request: counted as one, it opened the breaker, and the skipped attempts
 * then parked `exhausted` instead of `blocked` at the end of the ladder.
 */
export function signalOf(result: { kind: 'response'; status: number } | { kind: 'error'; code: string }): OriginSignal {
  if (result.kind === 'response') return result.status === 429 || result.status === 503 ? 'overload' : 'success';
  if (FAILURE_CODES.has(result.code)) return 'failure';
  // TLS failures are the origin's (expired certificate, wrong host, a missing intermediate): it cannot be
  // delivered to. So is an answer undici's HTTP parser cannot read (HPE_*).
  if (/^ERR_TLS_|^ERR_SSL_|CERT|^UNABLE_TO_VERIFY_LEAF_SIGNATURE$|^HPE_/.test(result.code)) return 'failure';
  return 'none';
}
