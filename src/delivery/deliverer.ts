import type { Dispatcher } from 'undici';
import type { DeliveryConfig } from '../core/config.js';
import type { AddressGuard } from './address-guard.js';
import { isIP } from 'node:net';
import { allowedAddresses, asLookupError, guardedConnector, type ConnectRefusal, type SelfAddresses } from './connector.js';
import { DnsCache, type ResolvedAddress } from './dns-cache.js';
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
   * that address; null when the origin is the endpoint (`https`, or an
   * address literal).
   */
  readonly shared: SharedHost | null;
}

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
  readonly endpoints: readonly string[];
  readonly refusal: ConnectRefusal | null;
  turn: number;
}

/** The endpoint of an address and port, as a Client's origin. */
function endpointOf(a: ResolvedAddress, port: number): string {
  return a.family === 6 ? `http://[${a.address}]:${port}` : `http://${a.address}:${port}`;
}

function timed(r: HttpResult, started: number, sentAt: number | null = null): TimedResult {
  const t = { ...r, durationMs: performance.now() - started };
  return sentAt === null ? t : { ...t, sentAt };
}

/** How much of an unread 2xx body is drained to keep its connection (undici's dump() default). */
const DRAIN_LIMIT_BYTES = 128 * 1024;

/** Time left under which an attempt handed a connection counts as out of time. */
const EXPIRY_SLACK_MS = 5;

/** Thrown into a request whose whole-response deadline passed. */
class AttemptTimeout extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * One attempt as an undici dispatch handler: collects up to `cap` bytes of the
 * body, settles exactly once, and enforces the whole-response deadline. The
 * deadline also covers time waiting for one of the origin's connections: such
 * an attempt leaves the wait and settles at once, without a request. One
 * already handed to undici settles only when undici lets go of it (aborted on
 * its socket, or the moment a queued one would be written): settling earlier
 * would free the caller's slot while the dead request still queues, and
 * against a slow merchant such requests could pile up without bound.
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
    private readonly resolve: (r: TimedResult) => void,
    /** At the deadline, before the request reached undici: leaves the wait for a connection; true if it was still waiting. */
    private readonly leaveWait: () => boolean = () => false,
  ) {
    this.timer = setTimeout(() => this.onDeadline(), timeoutMs);
  }

  private settle(r: HttpResult): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.resolve(timed(r, this.started, this.sentAt));
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
    if (this.controller === null && this.leaveWait()) return this.onResponseError(null, new AttemptTimeout('deadline'));
    // Queued requests have no controller yet: onRequestStart aborts them.
    this.controller?.abort(new AttemptTimeout('deadline'));
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
    this.settle({ kind: 'response', status: this.status, body: this.body() });
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    const code = this.timedOut ? 'TIMEOUT' : errorCode(err);
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

/**
 * Makes the HTTP attempts of one process: keep-alive pools per origin,
 * connect/headers/whole-response deadlines, a cap on the body read, no
 * redirects (a dispatched request follows none), and the SSRF guard applied at
 * connect time through the socket's `lookup`.
 */
export class HttpDeliverer {
  private readonly pools: OriginPools;
  private readonly cfg: DeliveryConfig;
  private readonly verdicts = new Map<string, string | null>();
  private readonly targets = new Map<string, Target | null>();
  private readonly routes = new Map<string, Route>();
  private readonly dns: DnsCache;
  /** Parsed URLs and verdicts kept: enough for every origin the gate keeps, so 10,000 merchants do not thrash it. */
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
  ) {
    this.cfg = cfg;
    this.cacheSize = Math.max(4096, cfg.perOrigin.maxOrigins * 2);
    const dns = new DnsCache({ servers: cfg.dnsServers, timeoutMs: cfg.dnsTimeoutMs, maxEntries: Math.max(1024, cfg.perOrigin.maxOrigins) });
    this.dns = dns;
    const connect = guardedConnector({ timeoutMs: cfg.connectTimeoutMs, dns, guard, self });
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
    this.sweeper = setInterval(() => this.pools.sweep(), Math.max(1000, Math.min(10_000, cfg.perOrigin.poolIdleMs / 2)));
    this.sweeper.unref();
  }

  /** Endpoints kept now (at most `perOrigin.maxPools` with nothing in flight). */
  get poolCount(): number {
    return this.pools.size;
  }

  /**
   * The guard's verdict on a URL host, cached: hosts repeat (one merchant
   * endpoint serves many notifications) and the literal-IP check is not free.
   * Only literal addresses are decided here; names are checked at connect time.
   */
  private hostVerdict(hostname: string): string | null {
    let v = this.verdicts.get(hostname);
    if (v === undefined) {
      try {
        this.guard!.assertHostAllowed(hostname);
        v = null;
      } catch (err) {
        v = (err as Error).message;
      }
      if (this.verdicts.size >= this.cacheSize) this.verdicts.clear();
      this.verdicts.set(hostname, v);
    }
    return v;
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
        const named = url.protocol === 'http:' && !url.hostname.startsWith('[') && isIP(url.hostname) === 0;
        t = {
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          refused: this.guard ? this.hostVerdict(url.hostname) : null,
          shared: named ? { hostname: url.hostname, port: Number(url.port) || 80, host: url.host } : null,
        };
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
    return new Promise<TimedResult>((resolve) => {
      let client: Client | null = null;
      let wait: ConnectionWait | null = null;
      let resolving = false;
      // Counts an attempt whose name is being looked up, so closing the pools waits for it.
      let lookedUp = (): void => undefined;
      // The deadline runs from here, so it covers the name's lookup and a wait for a connection too.
      const handler = new AttemptHandler(
        started,
        this.cfg.maxResponseBytes,
        needBody,
        headBytes,
        this.cfg.timeoutMs,
        (r) => {
          if (client !== null) this.pools.release(t.origin, client);
          resolve(r);
        },
        () => {
          if (resolving) {
            resolving = false;
            lookedUp();
            return true;
          }
          return wait !== null && wait.cancel();
        },
      );
      const headers = t.shared === null ? req.headers : { ...req.headers, host: t.shared.host };
      const go = (c: Client): void => {
        client = c;
        // Out of time by the moment it got the connection: no request (an abort would cost the socket).
        if (handler.expired) return handler.onResponseError(null, new AttemptTimeout('deadline'));
        try {
          c.dispatch({ origin: t.origin, path: t.path, method: req.method, headers, body: req.body }, handler);
        } catch (err) {
          handler.onResponseError(null, err as Error);
        }
      };
      const start = (endpoint: string): void => {
        const got = this.pools.acquire(t.origin, endpoint);
        if (got instanceof ConnectionWait) {
          wait = got;
          void got.client.then(go);
        } else go(got);
      };
      const routeBy = (shared: SharedHost, answer: readonly ResolvedAddress[]): void => {
        const r = this.route(t.origin, shared, answer);
        if (r.refusal !== null) return handler.onResponseError(null, r.refusal);
        start(r.endpoints[r.turn++ % r.endpoints.length]!);
      };
      const shared = t.shared;
      if (shared === null) return start(t.origin);
      const answer = this.dns.peek(shared.hostname);
      if (answer !== undefined) return routeBy(shared, answer);
      resolving = true;
      lookedUp = this.pools.reserve();
      this.dns.resolve(shared.hostname).then(
        (a) => {
          if (!resolving) return; // the deadline came first
          resolving = false;
          routeBy(shared, a);
          lookedUp();
        },
        (err: unknown) => {
          if (!resolving) return;
          resolving = false;
          handler.onResponseError(null, asLookupError(err));
          lookedUp();
        },
      );
    });
  }

  /**
   * Where a named `http` origin's requests go for this DNS answer: the
   * allowed addresses as endpoints (their connections shared with every
   * origin on the same address and port), or why none is allowed. Kept per
   * origin until the answer or notifyd's own ports change; the connector
   * checks the address again when it connects.
   */
  private route(origin: string, shared: SharedHost, answer: readonly ResolvedAddress[]): Route {
    let r = this.routes.get(origin);
    if (r === undefined || r.answer !== answer || r.selfVersion !== this.self.version) {
      const choice = allowedAddresses(shared.hostname, shared.port, answer, this.guard, this.self);
      r = {
        answer,
        selfVersion: this.self.version,
        endpoints: choice.addresses === null ? [] : choice.addresses.map((a) => endpointOf(a, shared.port)),
        refusal: choice.refusal,
        turn: 0,
      };
      if (this.routes.size >= this.cacheSize) this.routes.clear();
      this.routes.set(origin, r);
    }
    return r;
  }

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
