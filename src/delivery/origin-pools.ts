/**
 * Keep-alive connections, counted per origin while in use and kept per
 * endpoint while idle, with a cap on the endpoints kept.
 *
 * An endpoint is where a connection goes: for `https` the origin itself (the
 * TLS session is for its name), for `http` the address and port its name
 * resolved to. Merchants on one shared host (a SaaS shop platform, a payment
 * aggregator's hosted pages, one load balancer for thousands of names) then
 * share its idle connections, as an HTTP/1.1 proxy does: a request names its
 * origin in `Host`, not in the connection. 10,000 such merchants cost a tier
 * a few connections instead of 10,000 (issue 14); merchants on hosts of
 * their own cost what they did.
 *
 * An origin uses at most `connectionsPerOrigin` at once, whichever endpoint
 * they come from; past that an attempt waits for the first one its origin
 * releases. So the per-origin bound, and a hanging merchant's share of the
 * sockets, are what they were without the sharing. Each endpoint keeps at
 * most `idlePerEndpoint` idle connections; the least recently used idle
 * endpoint is closed once `maxPools` are kept, and one unused for `idleMs`
 * is closed too.
 *
 * Each connection is an undici Client, not a Pool: a Pool carries a
 * 2,048-slot request queue (16 KB) that notifyd never fills, as the origin
 * gate already caps the attempts in flight per origin.
 */
import type { Client } from './undici-core.js';

/**
 * The reason given to the sockets of an endpoint closed while idle. One
 * shared error: `close()` makes a new one per connection, and Node reads its
 * stack when the socket is destroyed, which was a twentieth of a tier's CPU
 * when many origins came and went.
 */
const RETIRED = Object.assign(new Error('idle keep-alive connection closed by notifyd'), { code: 'POOL_RETIRED' });
void RETIRED.stack;

export interface OriginPoolsOptions {
  /** Endpoints whose idle connections are kept. */
  readonly maxPools: number;
  /** Connections one origin uses at once, at most. */
  readonly connectionsPerOrigin: number;
  /** Idle connections one endpoint keeps, at most (default `connectionsPerOrigin`); one released past it is closed. */
  readonly idlePerEndpoint?: number;
  /** An endpoint with nothing in flight for this long is closed. */
  readonly idleMs: number;
  /** Builds one connection's Client for an endpoint. */
  readonly create: (endpoint: string) => Client;
  readonly now?: () => number;
}

interface Endpoint {
  readonly key: string;
  /** Its idle connections; the last released is used first, so traffic stays on few sockets and the rest time out. */
  readonly idle: Client[];
  /** Its connections in use. */
  busy: number;
  lastUsed: number;
}

interface OriginUse {
  /** Connections the origin uses now (at most `connectionsPerOrigin`). */
  inUse: number;
  /** Attempts waiting for one of them, first come first served. */
  readonly waiters: ConnectionWait[];
}

/** A connection's endpoint, and whether an attempt holds it. */
interface Home {
  readonly endpoint: Endpoint;
  busy: boolean;
}

/** An attempt waiting for a connection: its origin uses as many as it may. */
export class ConnectionWait {
  /** The connection, once one is released to this wait. */
  readonly client: Promise<Client>;
  private give!: (c: Client) => void;

  constructor(
    /** Where the attempt was routed: a connection released broken on another address is replaced by one to here. */
    readonly endpoint: string,
    private readonly leave: (w: ConnectionWait) => boolean,
  ) {
    this.client = new Promise((resolve) => (this.give = resolve));
  }

  /** Hands it the connection (OriginPools only). */
  serve(c: Client): void {
    this.give(c);
  }

  /** Gives up the wait (its deadline passed): true if it was still waiting, and then `client` never resolves. */
  cancel(): boolean {
    return this.leave(this);
  }
}

export class OriginPools {
  /** In least-recently-used order: an endpoint acquired from is moved to the end. */
  private readonly endpoints = new Map<string, Endpoint>();
  /** Origins with a connection in use or an attempt waiting (an idle origin costs nothing here). */
  private readonly origins = new Map<string, OriginUse>();
  private readonly homes = new Map<Client, Home>();
  private readonly idlePerEndpoint: number;
  private readonly now: () => number;
  private closing: Promise<void> | null = null;
  /** Attempts in flight or waiting, all origins together (close() waits for none). */
  private attempts = 0;
  /** Set while close() waits for the last attempt to end. */
  private allIdle: (() => void) | null = null;

  constructor(private readonly opts: OriginPoolsOptions) {
    this.now = opts.now ?? Date.now;
    this.idlePerEndpoint = opts.idlePerEndpoint ?? opts.connectionsPerOrigin;
  }

  /** Endpoints kept now. */
  get size(): number {
    return this.endpoints.size;
  }

  /** Connections open or opening now, idle or in use. */
  get connections(): number {
    return this.homes.size;
  }

  /**
   * A connection for `origin` to `endpoint` (the origin itself unless its
   * name's address is shared), counted as in use until `release(origin,
   * client)`: the endpoint's last idle one, else a new one, while the origin
   * uses fewer than `connectionsPerOrigin`; past that, a wait for the first
   * one the origin releases (as an undici Pool's shared queue would).
   */
  acquire(origin: string, endpoint: string = origin): Client | ConnectionWait {
    let o = this.origins.get(origin);
    if (o === undefined) {
      o = { inUse: 0, waiters: [] };
      this.origins.set(origin, o);
    }
    this.attempts++;
    if (o.inUse >= this.opts.connectionsPerOrigin) {
      // Not pinned to one busy connection: it takes whichever its origin releases first.
      const use = o;
      const w = new ConnectionWait(endpoint, (me) => {
        const at = use.waiters.indexOf(me);
        if (at < 0) return false;
        use.waiters.splice(at, 1);
        this.ended();
        return true;
      });
      o.waiters.push(w);
      return w;
    }
    let c: Client;
    try {
      c = this.take(endpoint);
    } catch (err) {
      // No connection could be made for it (a Client refused the endpoint): nothing stays counted.
      if (o.inUse === 0 && o.waiters.length === 0) this.origins.delete(origin);
      this.ended();
      throw err;
    }
    o.inUse++;
    return c;
  }

  private take(key: string): Client {
    let e = this.endpoints.get(key);
    const reused = e?.idle.pop();
    // Made before anything is counted, since it may throw.
    const c = reused ?? this.opts.create(key);
    if (e === undefined) {
      if (this.endpoints.size >= this.opts.maxPools) this.evict(this.endpoints.size - this.opts.maxPools + 1);
      e = { key, idle: [], busy: 0, lastUsed: 0 };
    } else {
      this.endpoints.delete(key);
    }
    this.endpoints.set(key, e);
    e.busy++;
    e.lastUsed = this.now();
    if (reused === undefined) this.homes.set(c, { endpoint: e, busy: true });
    else this.homes.get(c)!.busy = true;
    return c;
  }

  /**
   * One attempt of `origin` on `client` is over: the connection goes to the
   * origin's next waiter, if any, else back to its endpoint. `broken`: it
   * failed to open on its address (refused, unreachable, timed out), so it
   * goes on only to a waiter routed to that same address; one routed to
   * another (a name with several, or a new DNS answer) gets a new connection
   * to its own, and the broken one is closed. Kept idle, it would open to
   * its address again only for an attempt routed there, as a new one would.
   */
  release(origin: string, client: Client, broken = false): void {
    const home = this.homes.get(client);
    const o = this.origins.get(origin);
    if (home === undefined || !home.busy || o === undefined || o.inUse <= 0) return;
    const next = o.waiters.shift();
    if (next !== undefined) {
      // The connection goes on to the next attempt, still in use; the waiter was counted already.
      this.ended();
      let c = client;
      if (broken && next.endpoint !== home.endpoint.key) {
        try {
          c = this.replace(client, next.endpoint);
        } catch {
          // No new one could be made for it: it takes this one, as before.
        }
      }
      return next.serve(c);
    }
    o.inUse--;
    if (o.inUse === 0) this.origins.delete(origin);
    const e = this.letGoOf(home);
    if (this.endpoints.get(e.key) === e && e.idle.length < this.idlePerEndpoint) e.idle.push(client);
    else this.retire(client);
    this.ended();
  }

  /** A connection is no longer in use (its endpoint's count); returns the endpoint. */
  private letGoOf(home: Home): Endpoint {
    const e = home.endpoint;
    home.busy = false;
    e.busy--;
    e.lastUsed = this.now();
    return e;
  }

  /** The endpoint `client` connects to, while it is kept. */
  endpointOf(client: Client): string | undefined {
    return this.homes.get(client)?.endpoint.key;
  }

  /**
   * An attempt whose connection failed to open moves to another endpoint of
   * its origin, keeping its place: the failed connection is closed (given to
   * the origin's next waiter, it would meet the same address) and one to
   * `endpoint` is taken in its stead, still counted as the origin's. If none
   * can be made, the attempt's place is given up as a failed `acquire` does.
   */
  swap(origin: string, failed: Client, endpoint: string): Client {
    try {
      return this.replace(failed, endpoint);
    } catch (err) {
      // The attempt ends here: its place goes to the next waiter, as at any release of a broken connection.
      this.release(origin, failed, true);
      throw err;
    }
  }

  /**
   * A connection to `endpoint` in use in place of `failed`, which is closed;
   * throws, with nothing changed, when none can be made for it.
   */
  private replace(failed: Client, endpoint: string): Client {
    const c = this.take(endpoint);
    const home = this.homes.get(failed);
    if (home?.busy) this.letGoOf(home);
    this.retire(failed);
    return c;
  }

  /**
   * Counts an attempt that will acquire later (its name is being looked up),
   * so close() waits for it; the function returned ends the count, once,
   * after that attempt's acquire or when it gives up.
   */
  reserve(): () => void {
    this.attempts++;
    let open = true;
    return () => {
      if (open) {
        open = false;
        this.ended();
      }
    };
  }

  /** One attempt is over (done or gave up waiting). */
  private ended(): void {
    this.attempts--;
    if (this.allIdle !== null && this.attempts === 0) {
      this.allIdle();
      this.allIdle = null;
    }
  }

  /** Closes an idle connection (nothing in flight: `destroy` aborts nothing). */
  private retire(c: Client): void {
    this.homes.delete(c);
    void c.destroy(RETIRED).catch(() => undefined);
  }

  /** Closes an idle endpoint's connections and forgets it. */
  private drop(e: Endpoint): void {
    this.endpoints.delete(e.key);
    for (const c of e.idle.splice(0)) this.retire(c);
  }

  /** Closes up to `n` idle endpoints, least recently used first (one with a connection in use is never closed). */
  private evict(n: number): void {
    for (const e of this.endpoints.values()) {
      if (n <= 0) break;
      if (e.busy > 0) continue;
      this.drop(e);
      n--;
    }
  }

  /** Closes endpoints idle for longer than `idleMs` (call now and then). */
  sweep(): void {
    const cutoff = this.now() - this.opts.idleMs;
    for (const e of this.endpoints.values()) {
      // LRU order: once one is recent, the rest are too.
      if (e.lastUsed > cutoff) break;
      if (e.busy > 0) continue;
      this.drop(e);
    }
  }

  /**
   * Closes every connection once the attempts under way, and those waiting
   * for a connection, have ended (a reload closes the old deliverer: its
   * waiting attempts are served, not failed); idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.attempts > 0) await new Promise<void>((resolve) => (this.allIdle = resolve));
      const clients = [...this.homes.keys()];
      this.homes.clear();
      this.endpoints.clear();
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    })();
    return this.closing;
  }
}
