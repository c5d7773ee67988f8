/**
 * Keep-alive connection pools, one per origin, with a cap on how many are
 * kept. undici's Agent keeps a pool for every origin that still has a
 * connection open, so 10,000 merchants mean 10,000 pools and sockets; here
 * the least recently used idle pool is closed once `maxPools` are open, and
 * a pool unused for `idleMs` is closed too. Open sockets are then at most
 * `maxPools × connectionsPerOrigin`, whatever the number of merchants.
 */
import { Pool } from 'undici';

export interface OriginPoolsOptions {
  readonly maxPools: number;
  /** A pool with nothing in flight for this long is closed. */
  readonly idleMs: number;
  /** Builds the pool of an origin. */
  readonly create: (origin: string) => Pool;
  readonly now?: () => number;
}

interface Entry {
  readonly pool: Pool;
  active: number;
  lastUsed: number;
}

export class OriginPools {
  /** In least-recently-used order: a used entry is moved to the end. */
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: OriginPoolsOptions) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The pool for `origin`, counted as in use until `release(origin)`. */
  acquire(origin: string): Pool {
    let e = this.entries.get(origin);
    if (e === undefined) {
      e = { pool: this.opts.create(origin), active: 0, lastUsed: 0 };
      if (this.entries.size >= this.opts.maxPools) this.evict(this.entries.size - this.opts.maxPools + 1);
    } else {
      this.entries.delete(origin);
    }
    this.entries.set(origin, e);
    e.active++;
    e.lastUsed = this.now();
    return e.pool;
  }

  /** One attempt on `origin`'s pool is over. */
  release(origin: string): void {
    const e = this.entries.get(origin);
    if (e !== undefined) {
      e.active = Math.max(0, e.active - 1);
      e.lastUsed = this.now();
    }
  }

  /** Closes up to `n` idle pools, least recently used first (busy ones are never closed). */
  private evict(n: number): void {
    for (const [origin, e] of this.entries) {
      if (n <= 0) break;
      if (e.active > 0) continue;
      this.entries.delete(origin);
      void e.pool.close().catch(() => undefined);
      n--;
    }
  }

  /** Closes pools idle for longer than `idleMs` (call now and then). */
  sweep(): void {
    const cutoff = this.now() - this.opts.idleMs;
    for (const [origin, e] of this.entries) {
      // LRU order: once one is recent, the rest are too.
      if (e.lastUsed > cutoff) break;
      if (e.active > 0) continue;
      this.entries.delete(origin);
      void e.pool.close().catch(() => undefined);
    }
  }

  /** Closes every pool; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pools = [...this.entries.values()].map((e) => e.pool);
    this.entries.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
}
