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
  readonly waiters: ConnectionWait[];
  /** Attempts in flight or waiting. */
  active: number;
  lastUsed: number;
}

/** An attempt waiting for one of its origin's connections (all in use, as many as allowed). */
export class ConnectionWait {
  /** The connection, once one is released to this wait. */
  readonly client: Promise<Client>;
  private give!: (c: Client) => void;

  constructor(private readonly leave: (w: ConnectionWait) => boolean) {
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

/** Closes an idle origin's clients (nothing in flight: `destroy` aborts nothing). */
function retire(e: Entry): void {
  for (const c of e.clients) void c.destroy(RETIRED).catch(() => undefined);
}

export class OriginPools {
  /** In least-recently-used order: a used entry is moved to the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private closing: Promise<void> | null = null;
  /** Attempts in flight or waiting, all origins together (close() waits for none). */
  private attempts = 0;
  /** Set while close() waits for the last attempt to end. */
  private allIdle: (() => void) | null = null;

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
   * out), else a new one up to `connectionsPerOrigin`; past that, a wait
   * for the first one released (as an undici Pool's shared queue would).
   */
  acquire(origin: string): Client | ConnectionWait {
    let e = this.entries.get(origin);
    if (e === undefined) {
      e = { clients: [], busy: [], waiters: [], active: 0, lastUsed: 0 };
      if (this.entries.size >= this.opts.maxPools) this.evict(this.entries.size - this.opts.maxPools + 1);
    } else {
      this.entries.delete(origin);
    }
    this.entries.set(origin, e);
    e.active++;
    this.attempts++;
    e.lastUsed = this.now();
    let pick = e.busy.indexOf(0);
    if (pick < 0) {
      if (e.clients.length >= this.opts.connectionsPerOrigin) {
        // Not pinned to one busy connection: it takes whichever is released first.
        const entry = e;
        const w = new ConnectionWait((me) => {
          const at = entry.waiters.indexOf(me);
          if (at < 0) return false;
          entry.waiters.splice(at, 1);
          this.ended(entry);
          return true;
        });
        e.waiters.push(w);
        return w;
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
    const next = e.waiters.shift();
    if (next !== undefined) {
      // The connection goes on to the next attempt, still busy; the waiter was counted active already.
      this.ended(e);
      return next.serve(client);
    }
    e.busy[i]!--;
    this.ended(e);
  }

  /** One attempt of `e` is over (done or gave up waiting). */
  private ended(e: Entry): void {
    e.active--;
    this.attempts--;
    e.lastUsed = this.now();
    if (this.allIdle !== null && this.attempts === 0) {
      this.allIdle();
      this.allIdle = null;
    }
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

  /**
   * Closes every connection once the attempts under way, and those waiting
   * for a connection, have ended (a reload closes the old deliverer: its
   * waiting attempts are served, not failed); idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.attempts > 0) await new Promise<void>((resolve) => (this.allIdle = resolve));
      const clients = [...this.entries.values()].flatMap((e) => e.clients);
      this.entries.clear();
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    })();
    return this.closing;
  }
}
