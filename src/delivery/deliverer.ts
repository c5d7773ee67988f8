import type { Dispatcher } from 'undici';
import type { DeliveryConfig } from '../core/config.js';
import type { AddressGuard } from './address-guard.js';
import { isIP } from 'node:net';
import { AddressHealth, addressKey, isAddressFailure, nextCandidate } from './address-health.js';
import { allowedAddresses, asLookupError, guardedConnector, type ConnectRefusal, type SelfAddresses } from './connector.js';
import { DnsCache, type DnsCacheOptions, type ResolvedAddress } from './dns-cache.js';
import { ConnectionWait, OriginPools } from './origin-pools.js';
import { Client } from './undici-core.js';
import type { AttemptResult } from './outcome.js';

/** One HTTP request to make. */
export interface OutgoingRequest {
  readonly url: string;
  readonly method: 'POST' | 'PUT';
  /** Sent as they are (the caller includes content-type and user-agent). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** What a request produced (an attempt the deliverer makes is never skipped). */
export type HttpResult = Exclude<AttemptResult, { kind: 'skipped' }>;

/** An attempt's result and its round-trip time. */
export type TimedResult = HttpResult & {
  readonly durationMs: number;
  /**
   * Epoch ms its request was handed to a connection to be written (after any
   * wait for a connection and its connect); absent when none was sent.
   */
  readonly sentAt?: number;
};

interface Target {
  readonly origin: string;
  readonly path: string;
  /** Why the SSRF guard refuses the host, or null when it may be called. */
  readonly refused: string | null;
  /**
   * For an `http` URL with a name: what decides its endpoint (the address the
   * name resolves to) and the `Host` its requests carry on a connection to
   * that address; null when the origin is the endpoint (`https`, an
   * address literal, or `shareConnections` off: the name is then resolved
   * when a connection opens).
   */
  readonly shared: SharedHost | null;
}

/** What an origin decides for every URL under it. */
type OriginHost = Pick<Target, 'origin' | 'refused' | 'shared'>;

interface SharedHost {
  readonly hostname: string;
  readonly port: number;
  /** The `Host` header, as undici writes it for the origin (the port only when the URL has one). */
  readonly host: string;
}

/** An origin's endpoints for one DNS answer (the answer itself is the key: the cache hands out the same array until its TTL ends). */
interface Route {
  readonly answer: readonly ResolvedAddress[];
  readonly selfVersion: number;
  /** performance.now() when decided: decided again after ROUTE_RECHECK_MS, as this host's own addresses are read again each minute. */
  readonly decidedAt: number;
  readonly endpoints: readonly string[];
  /** Each endpoint's `addressKey` (what the connector marks when its connect fails); '' for the origin itself, which the connector falls back within. */
  readonly keys: readonly string[];
  readonly refusal: ConnectRefusal | null;
  turn: number;
}

/** How long an attempt waits for a new answer before it goes on with the last one past its TTL, at most half its deadline (RFC 8767 suggests 1.8 s). */
const STALE_AFTER_MS = 1_000;

/** The resolver a delivery configuration asks for. */
function dnsOptionsOf(cfg: DeliveryConfig): DnsCacheOptions {
  return { servers: cfg.dnsServers, timeoutMs: cfg.dnsTimeoutMs, maxEntries: Math.max(1024, cfg.perOrigin.maxOrigins) };
}

/** The wait for a new DNS answer past the last one's TTL, for an attempt deadline of `timeoutMs`. */
function staleAfter(timeoutMs: number): number {
  return Math.min(STALE_AFTER_MS, timeoutMs / 2);
}

/** How long a route's verdict on its addresses is kept at most (SelfAddresses reads this host's addresses once a minute). */
const ROUTE_RECHECK_MS = 60_000;

/**
 * How long an address whose connect failed is tried after its name's other
 * addresses: long enough that a merchant with one server down is not asked
 * to refuse every few connections, short enough that a server back up gets
 * its share again within a minute.
 */
const ADDRESS_HOLD_MS = 30_000;

/**
 * The endpoint of an address and port, as a Client's origin; the origin
 * itself (its own connections, the name resolved at connect) for an IPv6
 * address with a zone, which a URL cannot carry as it is.
 */
function endpointOf(a: ResolvedAddress, port: number, origin: string): string {
  if (a.family === 6) return a.address.includes('%') ? origin : `http://[${a.address}]:${port}`;
  return `http://${a.address}:${port}`;
}

function timed(r: HttpResult, started: number, sentAt: number | null = null): TimedResult {
  const t = { ...r, durationMs: performance.now() - started };
  return sentAt === null ? t : { ...t, sentAt };
}

/** How much of an unread 2xx body is drained to keep its connection (undici's dump() default). */
const DRAIN_LIMIT_BYTES = 128 * 1024;

/** Time left under which an attempt handed a connection counts as out of time. */
const EXPIRY_SLACK_MS = 5;

/** What an attempt's handler reports to. */
interface AttemptOwner {
  /** The attempt's result, once. */
  settled(r: TimedResult): void;
  /**
   * undici has let go of the request (its end or its error): its connection
   * may serve another, unless `broken` (it failed to open on its address).
   */
  letGo(broken: boolean): void;
  /** At the deadline: leaves the lookup or the wait for a connection, if the attempt is still in one. */
  leaveWait(): void;
  /**
   * The connection failed to open on its address, so the request was never
   * written: true when the owner has sent it on through another of the
   * name's addresses (the handler then waits for that one); false to settle.
   */
  tryElsewhere(): boolean;
}

/** Thrown into a request whose whole-response deadline passed. */
class AttemptTimeout extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * One attempt as an undici dispatch handler: collects up to `cap` bytes of the
 * body, settles exactly once, and enforces the whole-response deadline. The
 * deadline covers every stage: a lookup or a wait for one of the origin's
 * connections is left at once, without a request; a request on its socket is
 * aborted; one handed to undici while its connection opens (a name looked up
 * and connected to there) settles at once and is aborted the moment it would
 * be written. Its connection stays counted as the origin's until undici lets
 * go of it, so such requests cannot pile up against a merchant that never
 * accepts: the next attempt waits for the connection, under its own deadline.
 */
class AttemptHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | null = null;
  private settled = false;
  private timedOut = false;
  private status = 0;
  private chunks: Buffer[] = [];
  private size = 0;
  private sentAt: number | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly started: number,
    private readonly cap: number,
    private readonly needBody: boolean,
    /** Of a 2xx read for nobody, this many first bytes are kept all the same (for the history). */
    private readonly headBytes: number,
    private readonly timeoutMs: number,
    private readonly owner: AttemptOwner,
    /**
     * The URL's host is a name: an address refused when the connection opens
     * came from DNS (a shared endpoint's connector sees only the address), so
     * it is `DNS_BLOCKED`, retried down the ladder, as the lookup's own check would say.
     */
    private readonly named: boolean,
  ) {
    this.timer = setTimeout(() => this.onDeadline(), timeoutMs);
  }

  private settle(r: HttpResult): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.owner.settled(timed(r, this.started, this.sentAt));
  }

  /**
   * The deadline has passed, or is too close for a request to make sense: an
   * attempt handed a connection in the same moment its own timer is due
   * (its timer not run yet) must not send a request only to abort it.
   */
  get expired(): boolean {
    return this.timedOut || performance.now() - this.started >= this.timeoutMs - EXPIRY_SLACK_MS;
  }

  private onDeadline(): void {
    this.timedOut = true;
    const timeout = new AttemptTimeout('deadline');
    // On its socket: undici reports the abort at once (onResponseError).
    if (this.controller !== null) return this.controller.abort(timeout);
    // In undici while its connection opens: settled now, aborted by onRequestStart when the connection is up.
    this.owner.leaveWait();
    this.fail(timeout);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.timedOut) controller.abort(new AttemptTimeout('deadline'));
    // When the merchant's clock for this attempt starts: a retry's delay is counted from here (src/core/schedule.ts retryTiming).
    else this.sentAt ??= Date.now();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number): void {
    // 1xx answers are interim; the final status comes in a later call.
    this.status = statusCode;
  }

  /** A 2xx nobody reads is drained (up to a limit) so its connection can be reused. */
  private get discarding(): boolean {
    return !this.needBody && this.status >= 200 && this.status < 300;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    const discard = this.discarding;
    const limit = discard ? DRAIN_LIMIT_BYTES : this.cap;
    const room = limit - this.size;
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (!discard && part.length > 0) this.chunks.push(part);
    else if (discard && this.size < this.headBytes) this.chunks.push(part.subarray(0, this.headBytes - this.size));
    this.size += part.length;
    if (chunk.length > room) {
      // More than we read: settle with what fits and drop the socket rather
      // than reuse it, as a merchant sending too much is not worth draining.
      this.settle({ kind: 'response', status: this.status, body: this.body() });
      controller.abort(new Error('response body over the cap'));
    }
  }

  onResponseEnd(): void {
    this.owner.letGo(false);
    this.settle({ kind: 'response', status: this.status, body: this.body() });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    // No onRequestStart yet: the connection failed to open, and nothing was written.
    const failedToOpen = this.controller === null && isAddressFailure(err);
    this.owner.letGo(failedToOpen);
    // Another address may take the request.
    if (failedToOpen && !this.timedOut && !this.settled && this.owner.tryElsewhere()) return;
    this.fail(err);
  }

  /** Settles with `err` as the attempt's error (the deadline's own `TIMEOUT` once it has passed). */
  fail(err: Error): void {
    const raw = this.timedOut ? 'TIMEOUT' : errorCode(err);
    const code = raw === 'DESTINATION_BLOCKED' && this.named ? 'DNS_BLOCKED' : raw;
    const message = code === 'TIMEOUT' ? `no complete response within ${this.timeoutMs}ms` : String(err?.message ?? err);
    this.settle({ kind: 'error', code, message });
  }

  private body(): string {
    if (this.chunks.length === 0) return '';
    const b = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    return b.toString('utf8');
  }
}

/** Maps transport errors to short stable codes for logs and `notify-last-error`. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'TIMEOUT';
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : 'NETWORK';
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'CONNECT_TIMEOUT';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'HEADERS_TIMEOUT';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'BODY_TIMEOUT';
    case 'UND_ERR_ABORTED':
      return 'TIMEOUT';
    default:
      return code;
  }
}

/** What every attempt of one deliverer shares: built once, passed to each AttemptRun as one argument. */
interface AttemptContext {
  readonly pools: OriginPools;
  readonly dns: DnsCache;
  readonly route: (origin: string, shared: SharedHost, answer: readonly ResolvedAddress[], now: number) => Route;
  /** Addresses whose connect failed lately (the connector marks them): a route tries them last. */
  readonly health: AddressHealth;
  readonly cfg: DeliveryConfig;
  /** The wait for a new DNS answer before the last one stands in (`staleAfter` of the deadline). */
  readonly staleAfterMs: number;
}

/**
 * One attempt from its start to its result: looks up an `http` name (under
 * the attempt's deadline), takes a connection of its origin (or waits for
 * one) and hands the request to undici. A class rather than closures per
 * attempt: a tier makes thousands a second.
 */
class AttemptRun implements AttemptOwner {
  private client: Client | null = null;
  private wait: ConnectionWait | null = null;
  /** Set while the name is looked up: the end of the count that makes closing the pools wait for it. */
  private lookingUp: (() => void) | null = null;
  /** undici holds the request (from dispatch to its end or error): its connection is not given back before. */
  private inUndici = false;
  /** The result is out. */
  private reported = false;
  /** A shared name's route and this attempt's turn in it; null for an origin that is its own endpoint. */
  private routed: Route | null = null;
  private turn = 0;
  /** The route's endpoints tried already, once a connect has failed (most attempts never need it). */
  private tried: number[] | null = null;
  /** When the request was handed to its connection (performance.now()): its connect's start, if it opens one. */
  private handedAt = 0;
  /** The connection failed to open on its address: given back, it goes on only to an attempt routed to that address. */
  private broken = false;
  private readonly pools: OriginPools;
  private readonly handler: AttemptHandler;
  private readonly headers: Readonly<Record<string, string>>;

  constructor(
    private readonly ctx: AttemptContext,
    private readonly t: Target,
    private readonly req: OutgoingRequest,
    needBody: boolean,
    headBytes: number,
    private readonly started: number,
    private readonly resolve: (r: TimedResult) => void,
  ) {
    const cfg = ctx.cfg;
    this.pools = ctx.pools;
    // The deadline runs from here, so it covers the name's lookup and a wait for a connection too.
    this.handler = new AttemptHandler(started, cfg.maxResponseBytes, needBody, headBytes, cfg.timeoutMs, this, t.shared !== null);
    this.headers = t.shared === null ? req.headers : { ...req.headers, host: t.shared.host };
  }

  begin(): void {
    const shared = this.t.shared;
    if (shared === null) return this.start(this.t.origin);
    const answer = this.ctx.dns.peek(shared.hostname);
    if (answer !== undefined) return this.routeBy(shared, answer);
    this.lookingUp = this.pools.reserve();
    // Past its TTL, the last answer stands in while DNS fails or is late (RFC 8767).
    this.ctx.dns.resolveOrLast(shared.hostname, this.ctx.staleAfterMs).then(
      (a) => this.looked(shared, a, null),
      (err: unknown) => this.looked(shared, null, asLookupError(err)),
    );
  }

  /** The lookup is over (an answer, or none and the error), unless the deadline ended it already. */
  private looked(shared: SharedHost, answer: readonly ResolvedAddress[] | null, err: Error | null): void {
    const end = this.endLookup();
    if (end === null) return;
    if (answer !== null) this.routeBy(shared, answer);
    else this.handler.fail(err!);
    end(); // after the acquire, which counts the attempt itself
  }

  /** The end of the lookup's count, once; null when it ended already (the deadline or an answer). */
  private endLookup(): (() => void) | null {
    const end = this.lookingUp;
    this.lookingUp = null;
    return end;
  }

  private routeBy(shared: SharedHost, answer: readonly ResolvedAddress[]): void {
    const r = this.ctx.route(this.t.origin, shared, answer, this.started);
    if (r.refusal !== null) return this.handler.fail(r.refusal);
    const n = r.endpoints.length;
    const turn = r.turn++;
    const health = this.ctx.health;
    // Spread over the endpoints; one whose connect failed lately goes last (no closures unless one of them is held).
    const i = n === 1 || !health.anyHeld(r.keys) ? turn % n : nextCandidate(n, turn, () => false, (k) => health.isHeld(r.keys[k]!));
    this.routed = r;
    this.turn = turn;
    this.start(r.endpoints[i]!);
  }

  tryElsewhere(): boolean {
    const r = this.routed;
    const c = this.client;
    if (r === null || c === null) return false;
    // The connection's own endpoint: after a wait, an attempt is served whichever its origin released first
    // (-1: an address its route no longer has, after a new DNS answer).
    const at = r.endpoints.indexOf(this.pools.endpointOf(c) ?? '');
    // Not from the origin's own endpoint (its connector tried each address already), nor after a connect
    // that took its whole timeout: a connection opens or fails within about one connect timeout.
    if ((at !== -1 && r.keys[at] === '') || performance.now() - this.handedAt >= this.ctx.cfg.connectTimeoutMs) return false;
    const tried = (this.tried ??= []);
    if (at !== -1 && !tried.includes(at)) tried.push(at);
    const health = this.ctx.health;
    const i = nextCandidate(r.endpoints.length, this.turn, (k) => tried.includes(k), (k) => health.isHeld(r.keys[k]!));
    if (i === -1) return false;
    tried.push(i);
    // Later, not inside undici's error callback for the failed connection, which it is still handling.
    queueMicrotask(() => this.moveTo(r.endpoints[i]!));
    return true;
  }

  /** Takes a connection to `endpoint` in place of the one that failed to open, and sends the request on it. */
  private moveTo(endpoint: string): void {
    const failed = this.client;
    // Settled meanwhile (defensive: the deadline's timer cannot run before a microtask): nothing to send.
    if (this.reported || failed === null) return this.release();
    // Out of time: no new connection for a request that would not be sent.
    if (this.handler.expired) {
      this.release();
      return this.handler.fail(new AttemptTimeout('deadline'));
    }
    this.client = null;
    this.broken = false;
    let next: Client;
    try {
      next = this.pools.swap(this.t.origin, failed, endpoint);
    } catch (err) {
      return this.handler.fail(err as Error);
    }
    this.go(next);
  }

  private start(endpoint: string): void {
    let got: Client | ConnectionWait;
    try {
      got = this.pools.acquire(this.t.origin, endpoint);
    } catch (err) {
      return this.handler.fail(err as Error);
    }
    if (got instanceof ConnectionWait) {
      this.wait = got;
      void got.client.then((c) => this.go(c));
    } else this.go(got);
  }

  private go(c: Client): void {
    this.client = c;
    // Settled already (defensive: a wait's hand-over runs as a microtask, before any timer could settle it).
    if (this.reported) return this.release();
    // Out of time by the moment it got the connection: no request (an abort would cost the socket).
    if (this.handler.expired) return this.handler.fail(new AttemptTimeout('deadline'));
    this.inUndici = true;
    this.handedAt = performance.now();
    try {
      c.dispatch({ origin: this.t.origin, path: this.t.path, method: this.req.method, headers: this.headers, body: this.req.body }, this.handler);
    } catch (err) {
      this.inUndici = false;
      this.handler.fail(err as Error);
    }
  }

  settled(r: TimedResult): void {
    this.reported = true;
    if (!this.inUndici) this.release();
    this.resolve(r);
  }

  letGo(broken: boolean): void {
    this.inUndici = false;
    this.broken = broken;
    if (this.reported) this.release();
  }

  /** Gives the connection back to the pools, once. */
  private release(): void {
    const c = this.client;
    if (c === null) return;
    this.client = null;
    this.pools.release(this.t.origin, c, this.broken);
  }

  leaveWait(): void {
    const end = this.endLookup();
    if (end !== null) end();
    else this.wait?.cancel();
  }
}

/**
 * Makes the HTTP attempts of one process: keep-alive pools per origin,
 * connect/headers/whole-response deadlines, a cap on the body read, no
 * redirects (a dispatched request follows none), and the SSRF guard applied at
 * connect time through the socket's `lookup`.
 */
export class HttpDeliverer {
  private readonly pools: OriginPools;
  private readonly cfg: DeliveryConfig;
  private readonly attempts: AttemptContext;
  private readonly targets = new Map<string, Target | null>();
  private readonly routes = new Map<string, Route>();
  private readonly hosts = new Map<string, OriginHost>();
  private readonly dns: DnsCache;
  /** Parsed URLs, origins and routes kept: enough for every origin the gate keeps, so 10,000 merchants do not thrash them. */
  private readonly cacheSize: number;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  /**
   * `self` is the process's view of notifyd's own ports (shared across
   * reloads, kept current by the master); a delivery never connects to them.
   */
  constructor(
    cfg: DeliveryConfig,
    private readonly guard: AddressGuard | null,
    private readonly self: SelfAddresses,
    /** The resolver (tests give their own); by default one from `cfg`. */
    dnsCache?: DnsCache,
  ) {
    this.cfg = cfg;
    this.cacheSize = Math.max(4096, cfg.perOrigin.maxOrigins * 2);
    const dns = dnsCache ?? new DnsCache(dnsOptionsOf(cfg));
    this.dns = dns;
    // One wait for both: an attempt's lookup and its connection's must agree on when the last answer stands in.
    const staleAfterMs = staleAfter(cfg.timeoutMs);
    const health = new AddressHealth({ holdMs: ADDRESS_HOLD_MS, maxEntries: this.cacheSize });
    const connect = guardedConnector({ timeoutMs: cfg.connectTimeoutMs, dns, staleAfterMs, guard, self, health });
    this.pools = new OriginPools({
      maxPools: cfg.perOrigin.maxPools,
      connectionsPerOrigin: cfg.connectionsPerOrigin,
      // A shared host may have all of a tier's attempts in flight at once; more than that are never used together.
      idlePerEndpoint: Math.max(cfg.connectionsPerOrigin, cfg.concurrency),
      idleMs: cfg.perOrigin.poolIdleMs,
      create: (endpoint) =>
        new Client(endpoint, {
          // Shorter than the origin's own idle timeout: sockets go first, then the origin's clients.
          keepAliveTimeout: Math.min(10_000, cfg.perOrigin.poolIdleMs),
          // A merchant's `Keep-Alive: timeout=N` may shorten that, never lengthen it (undici's own cap is 600 s).
          keepAliveMaxTimeout: Math.min(10_000, cfg.perOrigin.poolIdleMs),
          headersTimeout: cfg.headersTimeoutMs,
          bodyTimeout: cfg.timeoutMs,
          connect,
        }),
    });
    this.attempts = { pools: this.pools, dns, route: this.route, health, cfg, staleAfterMs };
    this.sweeper = setInterval(() => this.pools.sweep(), Math.max(1000, Math.min(10_000, cfg.perOrigin.poolIdleMs / 2)));
    this.sweeper.unref();
  }

  /**
   * This deliverer's DNS cache, for the deliverer a configuration reload
   * builds, when `cfg` asks for the same resolver: its last answers are what
   * carries merchants through a DNS outage, so a reload must not drop them.
   */
  dnsCacheFor(cfg: DeliveryConfig): DnsCache | undefined {
    const a = dnsOptionsOf(this.cfg);
    const b = dnsOptionsOf(cfg);
    const same = a.timeoutMs === b.timeoutMs && a.maxEntries === b.maxEntries && a.servers.join(',') === b.servers.join(',');
    return same ? this.dns : undefined;
  }

  /** Endpoints kept now (at most `perOrigin.maxPools` with nothing in flight). */
  get poolCount(): number {
    return this.pools.size;
  }

  /**
   * The guard's verdict on a URL host (kept with its origin by `hostOf`: the
   * literal-IP check is not free). Only literal addresses are decided here;
   * names are checked when their addresses are known.
   */
  private hostVerdict(hostname: string): string | null {
    try {
      this.guard!.assertHostAllowed(hostname);
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /**
   * What a URL's origin decides (its guard verdict, whether its endpoint is
   * its name's address), kept once per origin: the URLs of one merchant
   * differ by path and query, and the cache of URLs holds tens of thousands.
   */
  private hostOf(url: URL): OriginHost {
    let h = this.hosts.get(url.origin);
    if (h === undefined) {
      const named = this.cfg.perOrigin.shareConnections && url.protocol === 'http:' && !url.hostname.startsWith('[') && isIP(url.hostname) === 0;
      h = {
        origin: url.origin,
        refused: this.guard ? this.hostVerdict(url.hostname) : null,
        shared: named ? { hostname: url.hostname, port: Number(url.port) || 80, host: url.host } : null,
      };
      if (this.hosts.size >= this.cacheSize) this.hosts.clear();
      this.hosts.set(h.origin, h);
    }
    return h;
  }

  /**
   * Origin, path and guard verdict of a URL string, cached: one merchant
   * endpoint serves many notifications, and parsing a URL per attempt showed
   * in the profile.
   */
  private target(raw: string): Target | null {
    let t = this.targets.get(raw);
    if (t === undefined) {
      try {
        const url = new URL(raw);
        const host = this.hostOf(url);
        t = { origin: host.origin, path: `${url.pathname}${url.search}`, refused: host.refused, shared: host.shared };
      } catch {
        t = null;
      }
      if (this.targets.size >= this.cacheSize) this.targets.clear();
      this.targets.set(raw, t);
    }
    return t;
  }

  /**
   * Makes one attempt; never throws (failures come back as `kind: 'error'`).
   * `needBody: false` lets a 2xx answer be discarded unread (nothing will look
   * at it) but for its first `headBytes`; otherwise up to `maxResponseBytes`
   * is read.
   *
   * It drives undici's dispatcher directly rather than `request()`: no
   * Readable stream, AbortController or promise chain per attempt, which
   * was a fifth of a tier worker's CPU under load.
   */
  attempt(req: OutgoingRequest, needBody = true, headBytes = 0): Promise<TimedResult> {
    const started = performance.now();
    const t = this.target(req.url);
    if (t === null) return Promise.resolve(timed({ kind: 'error', code: 'INVALID_URL', message: 'unparsable URL' }, started));
    if (t.refused !== null) return Promise.resolve(timed({ kind: 'error', code: 'DESTINATION_BLOCKED', message: t.refused }, started));
    if (this.closed) return Promise.resolve(timed({ kind: 'error', code: 'UND_ERR_CLOSED', message: 'the deliverer is closed' }, started));
    return new Promise<TimedResult>((resolve) => new AttemptRun(this.attempts, t, req, needBody, headBytes, started, resolve).begin());
  }

  /**
   * Where a named `http` origin's requests go for this DNS answer: the
   * allowed addresses as endpoints (their connections shared with every
   * origin on the same address and port), or why none is allowed. Kept per
   * origin until the answer or notifyd's own ports change, a minute at most;
   * the connector checks the address again when it connects. (A bound
   * function: each AttemptRun calls it.)
   */
  private readonly route = (origin: string, shared: SharedHost, answer: readonly ResolvedAddress[], now: number): Route => {
    let r = this.routes.get(origin);
    if (r === undefined || r.answer !== answer || r.selfVersion !== this.self.version || now - r.decidedAt > ROUTE_RECHECK_MS) {
      const choice = allowedAddresses(shared.hostname, shared.port, answer, this.guard, this.self);
      // Each address once, however spelled; and every zone-scoped IPv6 address is the origin itself, once.
      const endpoints: string[] = [];
      const keys: string[] = [];
      for (const a of choice.addresses ?? []) {
        const e = endpointOf(a, shared.port, origin);
        const k = e === origin ? '' : addressKey(a.address, shared.port);
        if (keys.includes(k)) continue;
        endpoints.push(e);
        keys.push(k);
      }
      r = {
        answer,
        selfVersion: this.self.version,
        decidedAt: now,
        endpoints,
        keys,
        refusal: choice.refusal,
        turn: 0,
      };
      if (this.routes.size >= this.cacheSize) this.routes.clear();
      this.routes.set(origin, r);
    }
    return r;
  };

  /** The origin (scheme://host:port) of a URL, or null when it does not parse. Cached. */
  originOf(url: string): string | null {
    return this.target(url)?.origin ?? null;
  }

  /** Closes the pools; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    await this.pools.close();
  }
}
