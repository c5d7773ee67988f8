/**
 * What a configuration is (types) and the small pure helpers every process
 * uses on one. Parsing and validating lives in config.ts, which the master
 * and the CLI load: the workers get their config over the IPC pipe, so they
 * do not load the schema, ajv's compiled config validator, TypeBox or
 * node-cron only to be handed a config (TypeBox alone is ~14 MB resident per
 * process).
 */
import { isIPv4 } from 'node:net';

/** Exit status for invalid configuration (sysexits.h EX_CONFIG). */
export const EX_CONFIG = 78;

export type QueueType = 'quorum' | 'classic';
export type SigningScheme = 'none' | 'standard' | 'rsa2';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** What counts as a successful answer from the merchant. */
export interface SuccessCriteria {
  /** `2xx` (default) or an explicit list of statuses. */
  readonly status: '2xx' | readonly number[];
  /** When set, the response body (trimmed) must equal this exactly, e.g. Alipay's `success`. */
  readonly bodyEquals?: string;
}

/** Per-origin isolation (DESIGN §6): limits, breaker and resources per merchant server. */
export interface PerOriginConfig {
  /** Most attempts in flight to one origin, per tier worker (the adaptive limit's cap). */
  readonly maxConcurrency: number;
  /** The limit an origin starts with; it grows as the origin answers. */
  readonly initialLimit: number;
  /** Failures in a row (timeouts, refused or reset connections, DNS) that mark an origin failing. */
  readonly failureThreshold: number;
  /** How long a failing origin waits for its first probe; doubles while probes fail. */
  readonly probeIntervalMs: number;
  readonly maxProbeIntervalMs: number;
  /**
   * How long a notification may be expected to wait in memory for its origin; past it, it is deferred to the hold queue.
   * Also how long an attempt may take before its origin counts as slow (a notification past its wait budget is then skipped).
   */
  readonly queueTargetMs: number;
  /** Origins whose learned state is kept (idle ones are forgotten first). */
  readonly maxOrigins: number;
  /**
   * Endpoints whose idle keep-alive connections are kept (an `https` origin,
   * or the address and port an `http` name resolves to); the least recently
   * used idle one is closed past it.
   */
  readonly maxPools: number;
  /** An endpoint's connections unused this long are closed. */
  readonly poolIdleMs: number;
  /**
   * `http` origins whose names resolve to one address and port share its idle
   * keep-alive connections, each request naming its origin in `Host`. Off:
   * every origin is an endpoint of its own, as browsers and most clients
   * keep them (see docs/api.md, Connections, for when to turn it off).
   */
  readonly shareConnections: boolean;
}

export interface DeliveryConfig {
  /** Whole-attempt deadline (connect + headers + body), ms. */
  readonly timeoutMs: number;
  /** TCP/TLS connect deadline, ms. */
  readonly connectTimeoutMs: number;
  /** Deadline for the response headers, ms. */
  readonly headersTimeoutMs: number;
  /** How much of the response body is read (the rest is discarded). */
  readonly maxResponseBytes: number;
  /** HTTP attempts in flight per tier worker, all origins together. */
  readonly concurrency: number;
  /**
   * AMQP prefetch of a tier worker: the concurrency plus room for
   * notifications waiting in memory for a busy origin (default twice the
   * concurrency).
   */
  readonly prefetch: number;
  readonly perOrigin: PerOriginConfig;
  /** Connections one origin uses at once (`http` merchants on one address and port share its idle ones). */
  readonly connectionsPerOrigin: number;
  /**
   * Synthetic notifications each tier worker runs through a throwaway copy of
   * its pipeline at start, so its first real burst meets optimised code
   * (issue 18; see src/tier/warm-up.ts). 0 = none.
   */
  readonly warmUp: number;
  /**
   * Synthetic notifications a warmed tier worker then sends through the
   * broker to itself before it connects to consume: on a connection of its
   * own (closed afterwards), through private exclusive queues under the
   * prefix, so the code that reads deliveries off the socket, acks them and
   * publishes with confirms is optimised for the objects it will really
   * see (issue 18; see
   * src/tier/broker-warm-up.ts). Only with `warmUp` on, once per process.
   * 0 = none.
   */
  readonly warmUpThroughBroker: number;
  /**
   * The tiers that warm up. Each warmed worker holds about 18 MiB more from
   * its start (V8 heap and code, undici's parser), and about 25 MiB more
   * again with `warmUpThroughBroker` (V8's young generation at its 32-MiB
   * ceiling; docs/performance.md, stop 34), which a tier pays anyway
   * on its first burst but an idle tier never does: by default only tier 1,
   * where a merchant outage's failures land first (tier 0 is kept warm by
   * new notifications). A warmed worker runs without V8's memory reducer,
   * whose idle full collections would deoptimise what the warm-up compiled
   * within minutes, and with a floor of 16 MiB per semi-space under its
   * young generation, which the first scavenge after a quiet spell would
   * shrink to about 1 MiB (src/supervisor/worker-flags.ts), so it keeps
   * that memory while it idles.
   */
  readonly warmUpTiers: readonly number[];
  /**
   * Most skips or deferrals bound for the same queue within a few
   * milliseconds that travel as one broker message (a bundle, opened by the
   * tier that consumes it; src/broker/bundle.ts). A failing merchant's
   * notifications are skipped many at once, and each rung alone costs the
   * broker several deliveries' worth of work (issue 14). 0 or 1: each alone.
   */
  readonly bundleMax: number;
  /**
   * Old consumer channels ("lanes") a tier worker keeps while their
   * long-held deliveries finish, after moving its consumer to a new channel
   * so that those deliveries stop its acks from going out together
   * (src/broker/consumer-lanes.ts). A worker holds about
   * `(consumerLanes + 1) × prefetch` unacked deliveries at most. 0: never moves.
   */
  readonly consumerLanes: number;
  /** Statuses that park a notification at once instead of retrying. */
  readonly deadOnStatus: readonly number[];
  /** Default success criteria; a notification may carry its own. */
  readonly success: SuccessCriteria;
  /** Allow loopback/private/link-local destinations (SSRF guard off). */
  readonly allowPrivateNetworks: boolean;
  /** CIDRs allowed even though they are private (e.g. `127.0.0.0/8` in tests). */
  readonly allowCidrs: readonly string[];
  /** DNS servers for merchant names (`ip` or `ip:port`); empty = the system's (/etc/resolv.conf). */
  readonly dnsServers: readonly string[];
  /**
   * How much of a failed attempt's own time its retry delay may absorb, ms
   * (never more than half the delay): the next attempt is due one delay
   * after its request went out (after the attempt began when none did), or,
   * when the attempt took longer than this, one delay after its hand-on less
   * this (src/core/schedule.ts `retryTiming`). 0: every delay counted from
   * the hand-on.
   */
  readonly delayFromStartMs: number;
  /** Per-query DNS timeout; c-ares tries twice, doubling it, so a name that never answers fails after about 3× this. */
  readonly dnsTimeoutMs: number;
}

export interface IngressConfig {
  /** Port for the HTTP ingress; 0 picks a free one. */
  readonly port: number;
  readonly host: string;
  /** Largest accepted request body, bytes (413 above). */
  readonly maxBodyBytes: number;
  /** Most notifications in one `:batch` request. */
  readonly maxBatch: number;
  /**
   * Producer tokens, name → bearer token. A request must carry one of them
   * (when any is set); the name goes with each notification into logs,
   * outcome events and history, the token never. Required when `host` is
   * not loopback. The legacy single `ingress.token` is the producer `default`.
   */
  readonly tokens: Readonly<Record<string, string>>;
  /** Requests handled at once; more get 503 `OVERLOADED` at once, so memory stays bounded. */
  readonly maxConcurrentRequests: number;
  /** Publishes waiting for the broker's confirm at once; more get 503 `OVERLOADED`. */
  readonly maxInflightPublishes: number;
}

export interface AdminConfig {
  readonly port: number;
  /** Loopback by default; anything else requires `token`. */
  readonly host: string;
  readonly token: string | null;
}

export interface LimitsConfig {
  readonly urlMaxLength: number;
  readonly idMaxLength: number;
  readonly maxHeaders: number;
  /** Bytes of one header name + value. */
  readonly headerMaxBytes: number;
  /** Largest notification body (serialised), bytes. */
  readonly bodyMaxBytes: number;
}

export interface SigningConfig {
  readonly scheme: SigningScheme;
  /** `whsec_<base64>` secrets; the first signs, all are listed during rotation. */
  readonly secrets: readonly string[];
  /** PEM private key file for `rsa2`. */
  readonly keyFile: string | null;
  /** RSA signing threads (piscina). */
  readonly threads: number;
}

export interface SupervisorConfig {
  /** How long workers get to finish in-flight attempts on SIGTERM, ms. */
  readonly drainTimeoutMs: number;
  readonly restartBaseMs: number;
  readonly restartMaxMs: number;
  /** A worker up this long has its backoff reset, ms. */
  readonly restartResetMs: number;
  /** More restarts than this within `crashloopWindowMs` marks the tier `crashloop`. */
  readonly crashloopRestarts: number;
  readonly crashloopWindowMs: number;
}

/** Which attempts get a log line: every one, only those that did not deliver, or none. */
export type AttemptLogMode = 'all' | 'failures' | 'off';

export interface LogConfig {
  /**
   * The per-attempt log line. At full rate it is tens of thousands of lines a
   * second, past journald's default rate limit; `failures` keeps the ones an
   * operator looks for, `off` leaves it to metrics and history.
   */
  readonly attempts: AttemptLogMode;
}

export interface MetricsConfig {
  /** node-cron expression for sampling queue depths. */
  readonly queueSampleCron: string;
}

export interface DeadRedriveConfig {
  /** node-cron expression; null = off. */
  readonly cron: string | null;
  /** Most notifications moved per run. */
  readonly limit: number;
}

export interface DatabaseConfig {
  /** PostgreSQL URL (`NOTIFY_DATABASE_URL`); null: no merchants registry, no history, as before. */
  readonly url: string | null;
  /** Connections per process that queries (the master and the ingress); workers keep one. */
  readonly poolSize: number;
}

export interface MerchantsConfig {
  /** Refuse notifications without `merchant`. */
  readonly required: boolean;
  /** A merchant with only failed attempts for this long is disabled. */
  readonly autoDisableAfterMs: number;
  /** When to look for such merchants (node-cron, with seconds). */
  readonly autoDisableCron: string;
  /** How long a rotated-out secret keeps signing. */
  readonly rotationGraceMs: number;
  /** Full re-read of the registry, behind LISTEN/NOTIFY. */
  readonly refreshMs: number;
  /** AES-256-GCM key for secrets at rest (32 bytes, base64 or hex; `NOTIFY_SECRETS_KEY`); null stores them as they are (warned). */
  readonly secretsKey: string | null;
}

export interface HistoryConfig {
  /** Record every notification and attempt in PostgreSQL (DESIGN §11); only with a database. */
  readonly enabled: boolean;
  /** How long history is kept, by the notification's createdAt; dropped a whole day at a time. */
  readonly retentionMs: number;
  /** When the master drops days past the retention and adds the coming ones (node-cron, with seconds). */
  readonly retentionCron: string;
}

/**
 * Whether `tier`'s worker warms up at start (`delivery.warmUp` on, the tier in
 * `delivery.warmUpTiers`): the warm-up itself and the V8 flags a warmed
 * worker is forked with (src/supervisor/worker-flags.ts) must agree on it.
 */
export function warmsUp(c: Pick<Config, 'delivery'>, tier: number): boolean {
  return c.delivery.warmUp > 0 && c.delivery.warmUpTiers.includes(tier);
}

/** Whether this configuration records history: a database, and `history.enabled`. */
export function historyOn(c: Pick<Config, 'database' | 'history'>): boolean {
  return c.database.url !== null && c.history.enabled;
}

/** The validated, frozen configuration every process receives. */
export interface Config {
  /** One AMQP URL, or the comma-separated nodes of one cluster (checked by `parseBrokerNodes`). */
  readonly amqpUrl: string;
  /** Name prefix of every broker object, so installations can share a broker. */
  readonly prefix: string;
  readonly queueType: QueueType;
  /** Delays in ms; entry i is the wait before attempt i. */
  readonly scheduleMs: readonly number[];
  readonly delivery: DeliveryConfig;
  readonly ingress: IngressConfig;
  readonly admin: AdminConfig;
  readonly limits: LimitsConfig;
  readonly signing: SigningConfig;
  readonly supervisor: SupervisorConfig;
  readonly metrics: MetricsConfig;
  readonly deadRedrive: DeadRedriveConfig;
  readonly logLevel: LogLevel;
  readonly log: LogConfig;
  readonly database: DatabaseConfig;
  readonly merchants: MerchantsConfig;
  readonly history: HistoryConfig;
}

/** The 32 bytes of an AES-256 key written in base64 or hex, or null when it is neither. */
export function secretsKeyBytes(text: string): Buffer | null {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/]{43}=?$/.test(t) ? Buffer.from(t, 'base64') : null;
  return key !== null && key.length === 32 ? key : null;
}

/** Shorter bearer tokens are guessable; 16 characters of a random alphabet are not. */
export const MIN_TOKEN_LENGTH = 16;

/** Pure: an admin token shorter than `MIN_TOKEN_LENGTH` or with white space. */
export function weakAdminToken(token: string): boolean {
  return token.length < MIN_TOKEN_LENGTH || /\s/.test(token);
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  // An IPv4 address, not any name that starts with "127." (127.0.0.1.attacker.example is a DNS rebinding name).
  return host === 'localhost' || host === '::1' || (isIPv4(host) && host.startsWith('127.'));
}

/**
 * Pure: the first listening port bound beyond loopback without its token,
 * as the config key to set and how; null when both are safe. Without a
 * token there, anyone who reaches the ingress has notifications signed and
 * sent, and anyone who reaches the admin port runs the daemon. One check
 * for loading a config and for a reload (which keeps the addresses bound).
 */
export function missingPortToken(ingress: Pick<IngressConfig, 'host' | 'tokens'>, admin: Pick<AdminConfig, 'host' | 'token'>): { key: 'ingress.tokens' | 'admin.token'; why: string } | null {
  if (!isLoopbackHost(ingress.host) && Object.keys(ingress.tokens).length === 0) {
    return { key: 'ingress.tokens', why: `required while the ingress is bound to ${ingress.host} (not loopback), or anyone who reaches the port can have notifications signed and sent: set NOTIFY_INGRESS_TOKENS=name:token` };
  }
  if (isLoopbackHost(admin.host)) return null;
  if (!admin.token) return { key: 'admin.token', why: `required while the admin port is bound to ${admin.host} (not loopback): set NOTIFY_ADMIN_TOKEN` };
  // The admin token runs the daemon (pause, redrive, merchants' secrets): beyond loopback, held to the producers'
  // rule. On loopback a weak one is only warned of at start (it was accepted before).
  if (weakAdminToken(admin.token)) {
    return { key: 'admin.token', why: `must be at least ${MIN_TOKEN_LENGTH} characters without spaces while the admin port is bound to ${admin.host} (not loopback): e.g. openssl rand -hex 24` };
  }
  return null;
}

/** Recursively freezes a plain object so no module can change shared config. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Query parameters that carry a secret (pg reads `?password=` and `?sslpassword=` as readily as the user part). */
const SECRET_PARAM = /pass|secret|token/i;

/**
 * An AMQP or PostgreSQL URL, or a comma-separated list of them, with every
 * password replaced, in the user part or in a query parameter, for logs and
 * status. Text that does not parse as a URL is scrubbed of every
 * `//user:password@` and `password=…` it holds, wherever it is.
 */
export function redactUrl(url: string): string {
  return url
    .split(',')
    .map((part) => {
      try {
        const u = new URL(part.trim());
        if (u.password) u.password = '***';
        for (const k of [...u.searchParams.keys()]) if (SECRET_PARAM.test(k)) u.searchParams.set(k, '***');
        return u.toString();
      } catch {
        return part.replace(/\/\/([^:@/\s,]+):[^@/\s,]*@/g, '//$1:***@').replace(/([?&][^=&\s]*(?:pass|secret|token)[^=&\s]*=)[^&\s,]*/gi, '$1***');
      }
    })
    .join(',');
}

/**
 * Pure: what a reload from `old` to `next` can apply live. Queue-shaped and
 * broker settings need a restart (the topology is declared from them);
 * delivery, signing, limits and log level apply at once.
 */
export function diffConfig(old: Config, next: Config): { restartRequired: boolean; notes: string[] } {
  const notes: string[] = [];
  if (next.scheduleMs.join() !== old.scheduleMs.join()) notes.push('schedule changed: restart the daemon to apply it (queues and tiers are built from it)');
  if (next.amqpUrl !== old.amqpUrl || next.prefix !== old.prefix || next.queueType !== old.queueType) notes.push('broker settings (amqpUrl, prefix, queueType) changed: restart needed');
  if (next.ingress.port !== old.ingress.port || next.ingress.host !== old.ingress.host || next.admin.port !== old.admin.port || next.admin.host !== old.admin.host) {
    notes.push('listen addresses changed: restart needed');
  }
  if (!sameJson(storageOf(old), storageOf(next))) {
    notes.push('database, history or registry settings (database.*, history.enabled, merchants.secretsKey, merchants.refresh) changed: restart needed');
  }
  if (!sameJson(jobsOf(old), jobsOf(next))) {
    notes.push("the master's periodic jobs (metrics.queueSampleCron, deadRedrive.cron, merchants.autoDisableCron/autoDisableAfter, history.retention/retentionCron) changed: restart needed");
  }
  const restartRequired = notes.length > 0;
  if (!sameJson(warmUpOf(old), warmUpOf(next))) {
    // Not a restart: the tiers run as they are, only cold or warm as they started.
    notes.push('delivery.warmUp, warmUpThroughBroker or warmUpTiers changed: applies to tier workers started from now on (a warm-up and its V8 flags are set when a worker starts)');
  }
  notes.push('delivery, signing, limits and log level applied');
  return { restartRequired, notes };
}

/* Settings a tier worker reads once, when it starts: its warm-up and the V8 flags that come with it. */
const warmUpOf = (c: Config): unknown => [c.delivery.warmUp, c.delivery.warmUpThroughBroker, c.delivery.warmUpTiers];

/*
 * Settings read once, when a process starts: the processes' pools, the
 * history queue and recorder, the registry's key, and the master's cron jobs.
 * Only what is read: without a database nothing reads the registry's or the
 * history's settings.
 */
const storageOf = (c: Config): unknown => [c.database, historyOn(c), c.database.url === null ? null : [c.merchants.secretsKey, c.merchants.refreshMs]];
const jobsOf = (c: Config): unknown => [
  c.metrics.queueSampleCron,
  c.deadRedrive.cron,
  c.database.url === null ? null : [c.merchants.autoDisableCron, c.merchants.autoDisableAfterMs],
  historyOn(c) ? [c.history.retentionMs, c.history.retentionCron] : null,
];
const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * Pure: `next` with every setting `diffConfig` says needs a restart kept at
 * its running value in `old`. A reload applies this, so that a process
 * started after it (a worker restarted after a crash) runs with the values the
 * rest of the daemon runs with, not half of a change: a tier forked with
 * history turned on would wait for ever for a history queue the master never
 * declared. `diffConfig(old, keepRestartOnly(old, next))` needs no restart.
 */
export function keepRestartOnly(old: Config, next: Config): Config {
  return {
    ...next,
    amqpUrl: old.amqpUrl,
    prefix: old.prefix,
    queueType: old.queueType,
    scheduleMs: old.scheduleMs,
    ingress: { ...next.ingress, host: old.ingress.host, port: old.ingress.port },
    admin: { ...next.admin, host: old.admin.host, port: old.admin.port },
    database: old.database,
    history: old.history,
    // Requiring a merchant needs the registry: not while the database it would come with waits for a restart.
    merchants: { ...next.merchants, required: old.database.url === null ? old.merchants.required : next.merchants.required, secretsKey: old.merchants.secretsKey, refreshMs: old.merchants.refreshMs, autoDisableCron: old.merchants.autoDisableCron, autoDisableAfterMs: old.merchants.autoDisableAfterMs },
    metrics: { ...next.metrics, queueSampleCron: old.metrics.queueSampleCron },
    deadRedrive: { ...next.deadRedrive, cron: old.deadRedrive.cron },
  };
}
