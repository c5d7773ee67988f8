/**
 * Keep-alive connections per origin, with a cap on the origins kept. Each
 * origin has a small set of undici Clients (one connection each), not an
 * undici Pool: a Pool carries a 2,048-slot request queue (16 KB) that
 * notifyd never fills, as the origin gate already caps the attempts in
 * flight per origin, and 10,000 merchants made that 160 MB per tier. The
 * least recently used idle origin is closed once `maxPools` are kept, and an
 * origin unused for `idleMs` is closed too. Open sockets are then at most
 * `maxPools × connectionsPerOrigin`, whatever the number of merchants.
 */
import type { Client } from './undici-core.js';

/**
 * The reason given to the sockets of an origin closed while idle. One shared
 * error: `close()` makes a new one per connection, and Node reads its stack
 * when the socket is destroyed, which was a twentieth of a tier's CPU when
 * many origins came and went.
 */
const RETIRED = Object.assign(new Error('idle keep-alive connection closed by notifyd'), { code: 'POOL_RETIRED' });
void RETIRED.stack;

export interface OriginPoolsOptions {
  /** Origins whose connections are kept. */
  readonly maxPools: number;
  /** Connections (Clients) per origin, at most. */
  readonly connectionsPerOrigin: number;
  /** An origin with nothing in flight for this long is closed. */
  readonly idleMs: number;
  /** Builds one connection's Client for an origin. */
  readonly create: (origin: string) => Client;
  readonly now?: () => number;
}

interface Entry {
  readonly clients: Client[];
  /** Attempts in flight on `clients[i]`. */
  readonly busy: number[];
  /** Attempts waiting for one of the origin's connections, first come first served. */
  readonly waiters: ((client: Client | null) => void)[];
  /** Attempts in flight or waiting. */
  active: number;
  lastUsed: number;
}

/** Closes an idle origin's clients (nothing in flight: `destroy` aborts nothing). */
function retire(e: Entry): void {
  for (const c of e.clients) void c.destroy(RETIRED).catch(() => undefined);
}

export class OriginPools {
  /** In least-recently-used order: a used entry is moved to the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: OriginPoolsOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Origins kept now. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * A connection for `origin`, counted as in use until `release(origin, client)`:
   * the first idle one (so traffic stays on few sockets and the rest time
   * out), else a new one up to `connectionsPerOrigin`; past that, a promise
   * of the first one released (as an undici Pool's shared queue would), or
   * of null if the pools close first.
   */
  acquire(origin: string): Client | Promise<Client | null> {
    let e = this.entries.get(origin);
    if (e === undefined) {
      e = { clients: [], busy: [], waiters: [], active: 0, lastUsed: 0 };
      if (this.entries.size >= this.opts.maxPools) this.evict(this.entries.size - this.opts.maxPools + 1);
    } else {
      this.entries.delete(origin);
    }
    this.entries.set(origin, e);
    e.active++;
    e.lastUsed = this.now();
    let pick = e.busy.indexOf(0);
    if (pick < 0) {
      if (e.clients.length >= this.opts.connectionsPerOrigin) {
        // Not pinned to one busy connection: it takes whichever is released first.
        const waiters = e.waiters;
        return new Promise((resolve) => waiters.push(resolve));
      }
      e.clients.push(this.opts.create(origin));
      e.busy.push(0);
      pick = e.clients.length - 1;
    }
    e.busy[pick]!++;
    return e.clients[pick]!;
  }

  /** One attempt on `origin` through `client` is over: the connection goes to the next waiter, if any. */
  release(origin: string, client: Client): void {
    const e = this.entries.get(origin);
    if (e === undefined) return;
    const i = e.clients.indexOf(client);
    if (i < 0 || e.busy[i]! <= 0) return;
    e.lastUsed = this.now();
    const next = e.waiters.shift();
    // Handed on as it is: one attempt ends and one starts on the same connection, the counts stay.
    if (next !== undefined) return next(client);
    e.busy[i]!--;
    e.active--;
  }

  /** Closes up to `n` idle origins, least recently used first (busy ones are never closed). */
  private evict(n: number): void {
    for (const [origin, e] of this.entries) {
      if (n <= 0) break;
      if (e.active > 0) continue;
      this.entries.delete(origin);
      retire(e);
      n--;
    }
  }

  /** Closes origins idle for longer than `idleMs` (call now and then). */
  sweep(): void {
    const cutoff = this.now() - this.opts.idleMs;
    for (const [origin, e] of this.entries) {
      // LRU order: once one is recent, the rest are too.
      if (e.lastUsed > cutoff) break;
      if (e.active > 0) continue;
      this.entries.delete(origin);
      retire(e);
    }
  }

  /** Closes every connection, letting attempts under way finish; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const e of entries) for (const w of e.waiters.splice(0)) w(null);
    const clients = entries.flatMap((e) => e.clients);
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  }
}
