/**
 * Name resolution for deliveries, off Node's shared libuv thread pool.
 *
 * `dns.lookup` (getaddrinfo) runs on the pool's four threads: four lookups
 * of a name whose DNS never answers hold all of them, and every other
 * origin's lookup (and fs work) waits behind. c-ares (`dns.Resolver`) is
 * asynchronous on the event loop, so a hanging name costs its own queries
 * only. Answers are cached for their TTL (clamped), failures briefly, and
 * concurrent lookups of one name share one query. `/etc/hosts` is read
 * first, as getaddrinfo would, since c-ares queries DNS only.
 */
import dns from 'node:dns';
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';

/** One address of an answer. */
export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** The queries the cache makes (c-ares by default; tests inject their own). */
export interface DnsQueries {
  resolve4(name: string): Promise<{ address: string; ttl: number }[]>;
  resolve6(name: string): Promise<{ address: string; ttl: number }[]>;
}

export interface DnsCacheOptions {
  /** DNS servers (`ip` or `ip:port`); empty means the system's (/etc/resolv.conf). */
  readonly servers: readonly string[];
  /** Per-query timeout; c-ares tries twice, doubling it, so a name that never answers fails after about 3× this. */
  readonly timeoutMs: number;
  /** Most names kept; the oldest entry goes first. */
  readonly maxEntries: number;
  /** TTLs are clamped to [minTtlMs, maxTtlMs]: a TTL of 0 would mean a query per connection. */
  readonly minTtlMs?: number;
  readonly maxTtlMs?: number;
  /** How long a failed lookup is remembered (so a dead name is not asked again per connection). */
  readonly negativeTtlMs?: number;
  /** How long past its TTL an answer may still be used while a new one cannot be had or is late (`peekStale`; RFC 8767). */
  readonly maxStaleMs?: number;
  /** Hosts file read before DNS; null to skip. */
  readonly hostsFile?: string | null;
  readonly queries?: DnsQueries;
  readonly now?: () => number;
}

/** A lookup failure with a stable code: `DNS_NOTFOUND`, `DNS_TIMEOUT` or `DNS_FAILURE`. */
export class DnsError extends Error {
  constructor(
    readonly code: 'DNS_NOTFOUND' | 'DNS_TIMEOUT' | 'DNS_FAILURE',
    message: string,
  ) {
    super(message);
    this.name = 'DnsError';
  }
}

/** How often the hosts file is checked for a change. */
const HOSTS_CHECK_MS = 5_000;

type Entry = {
  readonly until: number;
  readonly value: readonly ResolvedAddress[] | DnsError;
  /** The last answer, kept through a timeout or a server failure (not through NXDOMAIN) for `peekStale`. */
  readonly last?: { readonly answer: readonly ResolvedAddress[]; readonly freshUntil: number };
};

function cAres(servers: readonly string[], timeoutMs: number): DnsQueries {
  const r = new dns.promises.Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers.length > 0) r.setServers([...servers]);
  return {
    resolve4: (name) => r.resolve4(name, { ttl: true }),
    resolve6: (name) => r.resolve6(name, { ttl: true }),
  };
}

function asDnsError(name: string, err: unknown): DnsError {
  const code = (err as { code?: string })?.code;
  if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'NXDOMAIN') return new DnsError('DNS_NOTFOUND', `${name} has no address (${code})`);
  if (code === 'ETIMEOUT' || code === 'ETIMEDOUT') return new DnsError('DNS_TIMEOUT', `no DNS answer for ${name} in time`);
  return new DnsError('DNS_FAILURE', `DNS lookup of ${name} failed (${code ?? String(err)})`);
}

/** Parses a hosts file into name → addresses (first address per family order kept). */
export function parseHosts(text: string): Map<string, ResolvedAddress[]> {
  const out = new Map<string, ResolvedAddress[]>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [address, ...names] = line.split(/\s+/);
    const family = isIP(address ?? '');
    if (family === 0) continue;
    for (const name of names) {
      const key = name.toLowerCase();
      const list = out.get(key) ?? [];
      if (!list.some((a) => a.address === address)) list.push({ address: address!, family: family as 4 | 6 });
      out.set(key, list);
    }
  }
  return out;
}

/**
 * Resolves names to addresses with a bounded, TTL-respecting cache. Never
 * uses the libuv thread pool.
 */
export class DnsCache {
  private readonly queries: DnsQueries;
  private readonly entries = new Map<string, Entry>();
  /** Lookups under way, and when each was sent (`now()`). */
  private readonly pending = new Map<string, { readonly answer: Promise<readonly ResolvedAddress[]>; readonly since: number }>();
  private readonly now: () => number;
  private readonly minTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxStaleMs: number;
  private hosts = new Map<string, ResolvedAddress[]>();
  private hostsCheckedAt = -Infinity;
  private hostsReading: Promise<Map<string, ResolvedAddress[]>> | null = null;
  private hostsMtime = 0;

  constructor(private readonly opts: DnsCacheOptions) {
    this.queries = opts.queries ?? cAres(opts.servers, opts.timeoutMs);
    this.now = opts.now ?? Date.now;
    this.minTtlMs = opts.minTtlMs ?? 5_000;
    this.maxTtlMs = opts.maxTtlMs ?? 300_000;
    this.negativeTtlMs = opts.negativeTtlMs ?? 2_000;
    this.maxStaleMs = opts.maxStaleMs ?? 3_600_000;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached answer for `name` while it is fresh, without a promise (a hot path's shortcut); undefined for a failure or a miss. */
  peek(name: string): readonly ResolvedAddress[] | undefined {
    const hit = this.entries.get(name.toLowerCase());
    return hit !== undefined && hit.until > this.now() && !(hit.value instanceof DnsError) ? hit.value : undefined;
  }

  /**
   * The last answer for `name` past its TTL, up to `maxStaleMs` past it
   * (RFC 8767), and whether it may be used at once: a lookup since has
   * failed (timed out, or the servers failed; a name that no longer exists
   * keeps none), or the one asked now has waited `lateMs` or more. Undefined
   * for a fresh answer or none kept. Otherwise a caller asks again
   * (`resolve`) and uses it only if the new answer is late.
   */
  peekStale(name: string, lateMs: number): { readonly answer: readonly ResolvedAddress[]; readonly usable: boolean } | undefined {
    const key = name.toLowerCase();
    const hit = this.entries.get(key);
    if (hit === undefined) return undefined;
    const now = this.now();
    if (hit.value instanceof DnsError) return hit.last !== undefined && now - hit.last.freshUntil <= this.maxStaleMs ? { answer: hit.last.answer, usable: true } : undefined;
    if (hit.until > now || now - hit.until > this.maxStaleMs) return undefined;
    const asked = this.pending.get(key);
    return { answer: hit.value, usable: asked !== undefined && now - asked.since >= lateMs };
  }

  /**
   * `resolve`, with the last answer standing in past its TTL (RFC 8767): at
   * once when a lookup since has failed or has waited `lateMs`; otherwise
   * when the new answer is still missing once the lookup is `lateMs` old, or
   * when it fails (not NXDOMAIN). The lookup goes on either way, so the
   * cache gets the new answer when it comes.
   */
  resolveOrLast(name: string, lateMs: number): Promise<readonly ResolvedAddress[]> {
    const fresh = this.peek(name);
    if (fresh !== undefined) return Promise.resolve(fresh);
    const stale = this.peekStale(name, lateMs);
    const asked = this.resolve(name);
    if (stale === undefined) return asked;
    if (stale.usable) {
      asked.catch(() => undefined);
      return Promise.resolve(stale.answer);
    }
    const since = this.pending.get(name.toLowerCase())?.since ?? this.now();
    return new Promise((done, fail) => {
      const timer = setTimeout(() => done(stale.answer), Math.max(0, since + lateMs - this.now()));
      asked.then(
        (a) => {
          clearTimeout(timer);
          done(a);
        },
        (err: unknown) => {
          clearTimeout(timer);
          const last = this.peekStale(name, lateMs);
          if (last !== undefined) done(last.answer);
          else fail(err);
        },
      );
    });
  }

  /** The IPv4 addresses of `name`, or its IPv6 ones when it has none; or a `DnsError`. */
  resolve(name: string): Promise<readonly ResolvedAddress[]> {
    const key = name.toLowerCase();
    const hit = this.entries.get(key);
    if (hit !== undefined && hit.until > this.now()) {
      return hit.value instanceof DnsError ? Promise.reject(hit.value) : Promise.resolve(hit.value);
    }
    let p = this.pending.get(key);
    if (p === undefined) {
      p = { answer: this.lookup(key).finally(() => this.pending.delete(key)), since: this.now() };
      this.pending.set(key, p);
    }
    return p.answer;
  }

  private remember(key: string, value: Entry['value'], ttlMs: number): void {
    const before = this.entries.get(key);
    this.entries.delete(key);
    if (this.entries.size >= this.opts.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    // A timeout or a server failure keeps the last answer for peekStale; a name that no longer exists does not.
    let last: Entry['last'];
    if (value instanceof DnsError && value.code !== 'DNS_NOTFOUND' && before !== undefined) {
      last = before.value instanceof DnsError ? before.last : { answer: before.value, freshUntil: before.until };
    }
    this.entries.set(key, last === undefined ? { until: this.now() + ttlMs, value } : { until: this.now() + ttlMs, value, last });
  }

  private async lookup(key: string): Promise<readonly ResolvedAddress[]> {
    // Kept as long as the hosts file goes unread, so a name from it is not looked up per attempt.
    const fromHosts = (await this.hostsTable()).get(key);
    if (fromHosts !== undefined) {
      this.remember(key, fromHosts, HOSTS_CHECK_MS);
      return fromHosts;
    }
    if (key === 'localhost' || key.endsWith('.localhost')) {
      // RFC 6761: always loopback, never asked of DNS.
      const loopback: ResolvedAddress[] = [{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }];
      this.remember(key, loopback, HOSTS_CHECK_MS);
      return loopback;
    }
    // AAAA only when the name has no A record: a merchant with IPv4 is reached over IPv4,
    // and a second query per name was half the resolver's cost with thousands of merchants.
    // A timeout or NXDOMAIN is not asked again for AAAA, which would only double the wait.
    const [v4] = await Promise.allSettled([this.queries.resolve4(key)]);
    const noA = v4.status === 'fulfilled' ? v4.value.length === 0 : (v4.reason as { code?: string })?.code === 'ENODATA';
    const [v6] = noA ? await Promise.allSettled([this.queries.resolve6(key)]) : [{ status: 'fulfilled' as const, value: [] }];
    const found: ResolvedAddress[] = [];
    let ttl = Infinity;
    for (const [r, family] of [[v4, 4], [v6, 6]] as const) {
      if (r.status !== 'fulfilled') continue;
      for (const a of r.value) {
        found.push({ address: a.address, family });
        ttl = Math.min(ttl, a.ttl * 1000);
      }
    }
    if (found.length === 0) {
      // The IPv4 failure's reason, the family nearly every merchant has; but a name with no A record failed on its
      // AAAA query (a timeout there is a timeout, which keeps the last answer, not "no address").
      const reason = v6.status === 'rejected' ? v6.reason : v4.status === 'rejected' ? v4.reason : Object.assign(new Error('no records'), { code: 'ENODATA' });
      const err = asDnsError(key, reason);
      this.remember(key, err, this.negativeTtlMs);
      throw err;
    }
    this.remember(key, found, Math.min(this.maxTtlMs, Math.max(this.minTtlMs, ttl)));
    return found;
  }

  /** The hosts file, re-read when it changed (checked at most every 5 s). */
  private hostsTable(): Promise<Map<string, ResolvedAddress[]>> {
    const file = this.opts.hostsFile === undefined ? '/etc/hosts' : this.opts.hostsFile;
    // Lookups while it is read wait for it: at a tier's start a burst of names would otherwise all see the empty
    // table and go to DNS (a name only in /etc/hosts not found, or DNS's answer cached over the file's).
    if (this.hostsReading !== null) return this.hostsReading;
    if (file === null || this.now() - this.hostsCheckedAt < HOSTS_CHECK_MS) return Promise.resolve(this.hosts);
    this.hostsCheckedAt = this.now();
    this.hostsReading = this.readHosts(file).finally(() => {
      this.hostsReading = null;
    });
    return this.hostsReading;
  }

  private async readHosts(file: string): Promise<Map<string, ResolvedAddress[]>> {
    try {
      const { mtimeMs } = await stat(file);
      if (mtimeMs !== this.hostsMtime) {
        this.hosts = parseHosts(await readFile(file, 'utf8'));
        this.hostsMtime = mtimeMs;
      }
    } catch {
      // Gone for a moment (a replace in progress): read it again when it is back, whatever its mtime then.
      this.hosts = new Map();
      this.hostsMtime = -1;
    }
    return this.hosts;
  }
}
