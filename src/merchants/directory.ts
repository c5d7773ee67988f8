/**
 * Every process's own copy of the merchant registry. It is read whole at
 * start and every `merchants.refresh`, and one merchant at a time whenever
 * PostgreSQL says it changed (LISTEN/NOTIFY), so a change reaches every
 * process of every daemon within about a second. While PostgreSQL is away
 * the last copy keeps serving: deliveries to known merchants go on.
 */
import type pg from 'pg';
import { redactUrl } from '../core/config-model.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { withTimeout } from '../core/with-timeout.js';
import { query } from '../db/sql.js';
import type { MerchantEntry } from './merchant.js';
import { openSecret } from './secrets.js';
import type { MerchantRow } from './store.js';

export interface DirectoryOptions {
  readonly url: string;
  /**
   * The key sealed secrets open with (null: they are stored as they are);
   * `'skip'` for a process that never signs (ingress, master): it keeps no
   * secret at all.
   */
  readonly key: Buffer | null | 'skip';
  readonly refreshMs: number;
  /** Connection name in pg_stat_activity. */
  readonly name: string;
  readonly log: Logger;
  /** A merchant changed (or appeared, or went). */
  readonly onChange?: (id: string) => void;
}

const CHANNEL = 'notify_merchants';

/**
 * How long a lookup's caller (a producer's POST) waits for PostgreSQL. The
 * query shares the copy's one connection, so it can queue behind a full
 * reload or a locked table for up to the 30 s query bound; the producer is
 * better told to retry.
 */
const LOOKUP_WAIT_MS = 2000;

function unavailable(): NotifyError {
  return new NotifyError(ErrorCodes.REGISTRY_UNAVAILABLE, 'the merchant registry cannot be read right now; retry');
}

export class MerchantDirectory {
  private entries = new Map<string, MerchantEntry>();
  private client: pg.Client | null = null;
  private loaded = false;
  private closed = false;
  private connecting: Promise<void> | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private readonly firstLoad: Promise<void>;
  private resolveFirstLoad!: () => void;
  /** Reloads one at a time, in the order the notifications came. */
  private reloads: Promise<void> = Promise.resolve();
  private lastDownLog = 0;
  private readonly warnedKeys = new Set<string>();
  private readonly lookups = new Map<string, Promise<MerchantEntry | undefined>>();
  private readonly misses = new Map<string, number>();

  constructor(private readonly opts: DirectoryOptions) {
    this.firstLoad = new Promise((r) => (this.resolveFirstLoad = r));
  }

  /** Starts connecting (in the background, with retries). */
  start(): void {
    void this.connect();
    this.refreshTimer = setInterval(() => void this.refresh(), this.opts.refreshMs);
    this.refreshTimer.unref();
  }

  /** Resolves once the registry has been read (or after `timeoutMs`, whichever comes first). */
  async ready(timeoutMs: number): Promise<boolean> {
    await Promise.race([this.firstLoad, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    return this.loaded;
  }

  /** The registry has been read at least once (an unknown id is then really unknown, up to the last refresh). */
  get isLoaded(): boolean {
    return this.loaded;
  }

  /** PostgreSQL answers now. */
  get isUp(): boolean {
    return this.client !== null;
  }

  get size(): number {
    return this.entries.size;
  }

  get(id: string): MerchantEntry | undefined {
    return this.entries.get(id);
  }

  /**
   * Like `get`, but a merchant not in the copy is asked of PostgreSQL once:
   * one created a moment ago on another daemon is found before its NOTIFY
   * arrives. Misses are remembered for a second, so unknown ids cost at most
   * one query a second each. Fails with `REGISTRY_UNAVAILABLE` when the query
   * fails or has not answered within 2 s (it goes on, and its answer is kept):
   * not knowing is not "not registered".
   */
  async lookup(id: string): Promise<MerchantEntry | undefined> {
    const hit = this.entries.get(id);
    if (hit !== undefined) return hit;
    const c = this.client;
    if (!c || (this.misses.get(id) ?? 0) > Date.now()) return undefined;
    let p = this.lookups.get(id);
    if (p === undefined) {
      p = c
        .query<MerchantRow>(query('merchants-all'), [id])
        .then((r) => {
          if (r.rowCount === 0) {
            if (this.misses.size > 10_000) this.misses.clear();
            this.misses.set(id, Date.now() + 1000);
            return undefined;
          }
          const e = this.entryOf(r.rows[0]!);
          this.entries.set(id, e);
          return e;
        })
        .catch(() => Promise.reject(unavailable()))
        .finally(() => this.lookups.delete(id));
      this.lookups.set(id, p);
    }
    return withTimeout(p, LOOKUP_WAIT_MS, unavailable);
  }

  /** Every merchant (the master's redrive checks who is enabled). */
  all(): Iterable<MerchantEntry> {
    return this.entries.values();
  }

  /**
   * Records that a merchant started failing (`failing`) or succeeded again.
   * Written only when the registry's copy says otherwise, and best effort: a
   * missed write is made again the next time the worker sees the same.
   */
  markFailing(id: string, failing: boolean): void {
    const c = this.client;
    if (!c) return;
    c.query(query('merchant-failing'), [id, failing]).catch((err: unknown) => this.opts.log.debug({ merchant: id, err: (err as Error).message }, 'could not record a merchant failing'));
  }

  private async connect(): Promise<void> {
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      for (let attempt = 0; !this.closed && this.client === null; attempt++) {
        // pg loads with the first connection: a process without a registry never needs it.
        const { default: pgLib } = await import('pg');
        // A bound per query: a database host that vanishes without a reset would otherwise leave this copy frozen
        // (no NOTIFY, lookups queued behind a query) until the kernel gives up, about 15 minutes; now the periodic
        // refresh's query fails within 30 s (room for a large registry's full load) and the copy reconnects.
        // Keep-alive drops such a connection while idle.
        const c = new pgLib.Client({ connectionString: this.opts.url, application_name: this.opts.name, connectionTimeoutMillis: 5000, keepAlive: true, keepAliveInitialDelayMillis: 10_000, query_timeout: 30_000 });
        try {
          c.on('error', () => this.lost(c));
          c.on('end', () => this.lost(c));
          c.on('notification', (n) => {
            if (n.channel === CHANNEL && n.payload) this.reloadOne(n.payload);
          });
          await c.connect();
          await c.query(`LISTEN ${CHANNEL}`);
          this.client = c;
          await this.loadAll(c);
          if (attempt > 0) this.opts.log.info({ merchants: this.entries.size }, 'merchant registry reachable again');
        } catch (err) {
          if (this.client === c) this.client = null;
          // Not awaited: on a host that vanished its end would wait for the kernel too.
          void c.end().catch(() => undefined);
          if (Date.now() - this.lastDownLog > 60_000) {
            this.lastDownLog = Date.now();
            this.opts.log.warn({ db: redactUrl(this.opts.url), err: (err as Error).message, merchants: this.entries.size }, 'merchant registry unreachable; serving the last copy and retrying');
          }
          await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** Math.min(attempt, 5))).unref());
        }
      }
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private lost(c: pg.Client): void {
    if (this.client !== c) return;
    this.client = null;
    void c.end().catch(() => undefined);
    if (!this.closed) void this.connect();
  }

  private async refresh(): Promise<void> {
    const c = this.client;
    if (!c) return;
    try {
      await this.loadAll(c);
    } catch {
      this.lost(c);
    }
  }

  private async loadAll(c: pg.Client): Promise<void> {
    const r = await c.query<MerchantRow>(query('merchants-all'), [null]);
    const next = new Map<string, MerchantEntry>();
    for (const row of r.rows) next.set(row.id, this.entryOf(row));
    const changed = [...next.keys()].filter((id) => this.entries.get(id)?.version !== next.get(id)!.version);
    const gone = [...this.entries.keys()].filter((id) => !next.has(id));
    this.entries = next;
    if (!this.loaded) {
      this.loaded = true;
      this.resolveFirstLoad();
    }
    for (const id of [...changed, ...gone]) this.opts.onChange?.(id);
  }

  private reloadOne(id: string): void {
    this.reloads = this.reloads.then(async () => {
      const c = this.client;
      if (!c) return;
      try {
        const r = await c.query<MerchantRow>(query('merchants-all'), [id]);
        if (r.rowCount === 0) this.entries.delete(id);
        else this.entries.set(id, this.entryOf(r.rows[0]!));
        this.opts.onChange?.(id);
      } catch {
        this.lost(c);
      }
    });
  }

  private entryOf(r: MerchantRow): MerchantEntry {
    const secrets: string[] = [];
    const secretEnds: (number | null)[] = [];
    let unopened = 0;
    const key = this.opts.key;
    for (const s of key === 'skip' ? [] : r.secrets) {
      try {
        secrets.push(openSecret(Buffer.from(s.secret ?? '', 'base64'), s.encrypted ?? false, key as Buffer | null, r.id));
        secretEnds.push(s.expiresAt === null ? null : new Date(s.expiresAt).getTime());
      } catch (err) {
        unopened++;
        // Said once per merchant and key, not on every refresh.
        const k = `${r.id}:${s.fingerprint}`;
        if (!this.warnedKeys.has(k)) {
          this.warnedKeys.add(k);
          this.opts.log.error({ merchant: r.id, fingerprint: s.fingerprint, err: (err as Error).message }, 'a merchant secret cannot be opened');
        }
      }
    }
    return {
      id: r.id,
      enabled: r.enabled,
      signing: r.signing_scheme,
      allowedOrigins: new Set(r.allowed_origins),
      maxConcurrency: r.max_concurrency,
      maxAttempts: r.max_attempts,
      success: r.success,
      failing: r.failing_since !== null,
      secrets,
      secretEnds,
      unopened,
      version: `${new Date(r.updated_at).getTime()}|${r.enabled}|${r.failing_since === null}|${r.secrets.map((s) => s.fingerprint).join(',')}`,
    };
  }

  /** Stops listening and refreshing; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    const c = this.client;
    this.client = null;
    await c?.end().catch(() => undefined);
  }
}
