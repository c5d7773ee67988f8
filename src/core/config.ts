import { readFileSync } from 'node:fs';
import { isIP, BlockList } from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cron from 'node-cron';
import { ajv, type Validator } from '../contract/ajv.js';
import { configProblem, MergedConfigSchema, type MergedConfig } from '../contract/config-schema.js';
import { parseBrokerNodes } from './broker-nodes.js';
import { ErrorCodes, NotifyError } from './errors.js';
import { decodeWebhookSecret, loadRsaPrivateKey } from './keys.js';
import { parseDuration, parseSchedule } from './schedule.js';

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
  /** How long a notification may be expected to wait in memory for its origin; past it, it is deferred to the hold queue. */
  readonly queueTargetMs: number;
  /** Origins whose learned state is kept (idle ones are forgotten first). */
  readonly maxOrigins: number;
  /** Origins whose keep-alive connections are kept; the least recently used idle one is closed past it. */
  readonly maxPools: number;
  /** An origin's connections unused this long are closed. */
  readonly poolIdleMs: number;
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
  /** Keep-alive connections per origin. */
  readonly connectionsPerOrigin: number;
  /**
   * Synthetic notifications each tier worker runs through a throwaway copy of
   * its pipeline at start, so its first real burst meets optimised code
   * (issue 18; see src/tier/warm-up.ts). 0 = none.
   */
  readonly warmUp: number;
  /**
   * The tiers that warm up. Each warmed worker holds about 18 MiB more from
   * its start (V8 heap and code, undici's parser), which a tier pays anyway
   * on its first burst but an idle tier never does: by default only tier 1,
   * where a merchant outage's failures land first (tier 0 is kept warm by
   * new notifications).
   */
  readonly warmUpTiers: readonly number[];
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

type Raw = Record<string, unknown>;

const here = dirname(fileURLToPath(import.meta.url));
/** `config/default.json`, found from both `src/core/` (tsx) and `dist/src/core/` (built). */
export function defaultConfigPath(): string {
  for (const up of ['../..', '../../..']) {
    const p = resolve(here, up, 'config', 'default.json');
    try {
      readFileSync(p);
      return p;
    } catch {
      /* try the next candidate */
    }
  }
  throw new NotifyError(ErrorCodes.CONFIG_INVALID, 'config: config/default.json not found', 'config');
}

function fail(key: string, why: string): never {
  throw new NotifyError(ErrorCodes.CONFIG_INVALID, `config: ${key}: ${why}`, key);
}

function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of plain objects; arrays and scalars in `over` replace. */
export function mergeRaw(base: Raw, over: Raw): Raw {
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isObject(v) && isObject(out[k]) ? mergeRaw(out[k] as Raw, v) : v;
  }
  return out;
}

/** Reads the values of `NOTIFY_*` variables into the raw config shape. */
export function envOverrides(env: NodeJS.ProcessEnv): Raw {
  const o: Raw = {};
  const set = (path: string, value: unknown): void => {
    const keys = path.split('.');
    let node = o;
    for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Raw;
    node[keys[keys.length - 1]!] = value;
  };
  const str = (name: string, path: string): void => {
    const v = env[name];
    if (v !== undefined && v !== '') set(path, v);
  };
  str('NOTIFY_AMQP_URL', 'amqpUrl');
  str('NOTIFY_PREFIX', 'prefix');
  str('NOTIFY_QUEUE_TYPE', 'queueType');
  str('NOTIFY_SCHEDULE', 'schedule');
  str('NOTIFY_INGRESS_PORT', 'ingress.port');
  str('NOTIFY_INGRESS_HOST', 'ingress.host');
  str('NOTIFY_INGRESS_TOKEN', 'ingress.token');
  const tokens = env.NOTIFY_INGRESS_TOKENS;
  if (tokens) set('ingress.tokens', parseTokenList(tokens));
  str('NOTIFY_ADMIN_PORT', 'admin.port');
  str('NOTIFY_ADMIN_HOST', 'admin.host');
  str('NOTIFY_ADMIN_TOKEN', 'admin.token');
  str('NOTIFY_SIGNING_SCHEME', 'signing.scheme');
  str('NOTIFY_SIGNING_KEY_FILE', 'signing.keyFile');
  str('NOTIFY_ALLOW_PRIVATE_NETWORKS', 'delivery.allowPrivateNetworks');
  str('NOTIFY_DELIVERY_CONCURRENCY', 'delivery.concurrency');
  str('NOTIFY_DELIVERY_WARM_UP', 'delivery.warmUp');
  str('NOTIFY_DRAIN_TIMEOUT', 'supervisor.drainTimeout');
  str('NOTIFY_LOG_LEVEL', 'logLevel');
  str('NOTIFY_LOG_ATTEMPTS', 'log.attempts');
  str('NOTIFY_DATABASE_URL', 'database.url');
  str('NOTIFY_SECRETS_KEY', 'merchants.secretsKey');
  const secret = env.NOTIFY_SIGNING_SECRET;
  if (secret) set('signing.secrets', secret.split(/[\s,]+/).filter(Boolean));
  const cidrs = env.NOTIFY_ALLOW_CIDRS;
  if (cidrs !== undefined) set('delivery.allowCidrs', cidrs.split(/[\s,]+/).filter(Boolean));
  const dnsServers = env.NOTIFY_DNS_SERVERS;
  if (dnsServers !== undefined) set('delivery.dnsServers', dnsServers.split(/[\s,]+/).filter(Boolean));
  return o;
}

/**
 * `name:token,name:token` as an object. An entry without a name is kept under
 * an empty name, for the parser to refuse with the key it belongs to.
 */
function parseTokenList(text: string): Raw {
  const out: Raw = {};
  for (const entry of text.split(/[\s,]+/).filter(Boolean)) {
    const i = entry.indexOf(':');
    out[i < 0 ? '' : entry.slice(0, i)] = i < 0 ? entry : entry.slice(i + 1);
  }
  return out;
}

const PRODUCER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Shorter bearer tokens are guessable; 16 characters of a random alphabet are not. */
const MIN_TOKEN_LENGTH = 16;

function parseTokens(v: Readonly<Record<string, string>> | null | undefined, legacy: string | null, key: string): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, token] of Object.entries(v ?? {})) {
    if (!PRODUCER_NAME.test(name)) fail(`${key}.${name.slice(0, 64)}`, 'a producer name is letters, digits and . _ - (up to 64), written name:token');
    if (token.length < MIN_TOKEN_LENGTH || /[\s,]/.test(token)) fail(`${key}.${name}`, `must be a token of at least ${MIN_TOKEN_LENGTH} characters without spaces or commas`);
    out[name] = token;
  }
  if (legacy !== null) {
    if (out.default !== undefined) fail(key, 'ingress.token is the producer "default": do not set both');
    out.default = legacy;
  }
  const seen = new Set<string>();
  for (const t of Object.values(out)) {
    if (seen.has(t)) fail(key, 'two producers share one token: each producer needs its own');
    seen.add(t);
  }
  return out;
}

/** A boolean the schema passed, maybe written as a word (`on`, `No`). */
const flag = (v: boolean | string): boolean => (typeof v === 'boolean' ? v : /^(1|true|yes|on)$/i.test(v));
/** An optional string the schema passed: null, empty or missing are all "not set". */
const orNull = <T extends string>(v: T | null | undefined): Exclude<T, ''> | null => (v === undefined || v === null || v === '' ? null : (v as Exclude<T, ''>));

/**
 * Reads durations of the section at `path` as ms, each held to its range:
 * a range of durations written as text is no schema pattern.
 */
function durations<S extends object>(section: S, path: string): (k: keyof S & string, minMs: number, maxMs: number) => number {
  return (k, minMs, maxMs) => {
    const ms = parseDuration(section[k] as string | number, `${path}.${k}`);
    if (ms < minMs || ms > maxMs) fail(`${path}.${k}`, `must be between ${minMs}ms and ${maxMs}ms (got ${ms}ms)`);
    return ms;
  };
}

function parsePerOrigin(o: MergedConfig['delivery']['perOrigin']): PerOriginConfig {
  const ms = durations(o, 'delivery.perOrigin');
  const out: PerOriginConfig = {
    maxConcurrency: Number(o.maxConcurrency),
    initialLimit: Number(o.initialLimit),
    failureThreshold: Number(o.failureThreshold),
    probeIntervalMs: ms('probeInterval', 10, 3_600_000),
    maxProbeIntervalMs: ms('maxProbeInterval', 10, 86_400_000),
    queueTargetMs: ms('queueTarget', 1, 3_600_000),
    maxOrigins: Number(o.maxOrigins),
    maxPools: Number(o.maxPools),
    poolIdleMs: ms('poolIdle', 100, 3_600_000),
  };
  if (out.initialLimit > out.maxConcurrency) fail('delivery.perOrigin.initialLimit', `must not exceed maxConcurrency (${out.maxConcurrency})`);
  if (out.maxProbeIntervalMs < out.probeIntervalMs) fail('delivery.perOrigin.maxProbeInterval', 'must not be shorter than probeInterval');
  return out;
}

function parseCidrs(v: readonly string[], key: string): readonly string[] {
  const probe = new BlockList();
  return v.map((c, i) => {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(c);
    const family = m ? isIP(m[1]!) : 0;
    if (!m || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) fail(`${key}[${i}]`, `"${c}" is not a CIDR`);
    probe.addSubnet(m[1]!, Number(m[2]), family === 4 ? 'ipv4' : 'ipv6');
    return c;
  });
}

/** A DNS server: `ip`, `ip:port` (IPv4) or `[ipv6]:port`. */
function isDnsServer(x: string): boolean {
  let host = x;
  let port: string | null = null;
  const bracketed = /^\[(.+)\]:(\d{1,5})$/.exec(x);
  const v4WithPort = /^([^:]+):(\d{1,5})$/.exec(x);
  if (bracketed) [, host, port] = bracketed as unknown as [string, string, string];
  else if (v4WithPort) [, host, port] = v4WithPort as unknown as [string, string, string];
  return isIP(host) !== 0 && (port === null || (Number(port) >= 1 && Number(port) <= 65535));
}

/** The 32 bytes of an AES-256 key written in base64 or hex, or null when it is neither. */
export function secretsKeyBytes(text: string): Buffer | null {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/]{43}=?$/.test(t) ? Buffer.from(t, 'base64') : null;
  return key !== null && key.length === 32 ? key : null;
}

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** Recursively freezes a plain object so no module can change shared config. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The loader's validator, compiled on first use from the shared first-error ajv: it reports one problem, `config check` all. */
let validator: Validator<MergedConfig> | null = null;

/**
 * Validates a raw (merged) configuration and returns the frozen `Config`.
 * Throws `CONFIG_INVALID` naming the first bad key. Types, ranges, fixed
 * sets and unknown keys are the schema's (`MergedConfigSchema`); what
 * follows converts text and checks what depends on several keys, files
 * or parsers.
 */
export function parseConfig(raw: Raw): Config {
  validator ??= ajv.compile<MergedConfig>(MergedConfigSchema);
  if (!validator(raw)) {
    const { key, why } = configProblem(validator.errors![0]!, raw);
    fail(key || 'config', why);
  }
  const { amqpUrl, prefix, queueType, logLevel } = raw;
  try {
    // Checked here so a bad entry stops start-up (exit 78); the message names the entry, never its text.
    parseBrokerNodes(amqpUrl);
  } catch (err) {
    fail('amqpUrl', (err as Error).message.replace(/^amqpUrl: /, ''));
  }
  let scheduleMs: readonly number[];
  try {
    scheduleMs = parseSchedule(raw.schedule);
  } catch (err) {
    fail('schedule', (err as Error).message.replace(/^schedule: /, ''));
  }

  const d = raw.delivery;
  const dms = durations(d, 'delivery');
  const concurrency = Number(d.concurrency);
  const prefetch = d.prefetch === null || d.prefetch === undefined ? Math.min(65_535, concurrency * 2) : Number(d.prefetch);
  if (prefetch < concurrency) fail('delivery.prefetch', `must be an integer from ${concurrency} to 65535 (got ${JSON.stringify(d.prefetch)})`);
  d.dnsServers.forEach((x, i) => {
    if (!isDnsServer(x)) fail(`delivery.dnsServers[${i}]`, `"${x}" is not an IP address with an optional port ([ipv6]:port for IPv6)`);
  });
  const delivery: DeliveryConfig = {
    timeoutMs: dms('timeout', 1, 10 * 60_000),
    connectTimeoutMs: dms('connectTimeout', 1, 10 * 60_000),
    headersTimeoutMs: dms('headersTimeout', 1, 10 * 60_000),
    maxResponseBytes: Number(d.maxResponseBytes),
    concurrency,
    prefetch,
    perOrigin: parsePerOrigin(d.perOrigin),
    connectionsPerOrigin: Number(d.connectionsPerOrigin),
    warmUp: Number(d.warmUp),
    warmUpTiers: d.warmUpTiers ?? [],
    deadOnStatus: d.deadOnStatus,
    success: { status: Array.isArray(d.success.status) ? [...d.success.status] : '2xx', ...(d.success.bodyEquals === undefined ? {} : { bodyEquals: d.success.bodyEquals }) },
    allowPrivateNetworks: flag(d.allowPrivateNetworks),
    allowCidrs: parseCidrs(d.allowCidrs, 'delivery.allowCidrs'),
    dnsServers: d.dnsServers,
    dnsTimeoutMs: dms('dnsTimeout', 10, 60_000),
  };

  const i = raw.ingress;
  const ingress: IngressConfig = {
    port: Number(i.port),
    host: i.host,
    maxBodyBytes: Number(i.maxBodyBytes),
    maxBatch: Number(i.maxBatch),
    tokens: parseTokens(i.tokens, orNull(i.token), 'ingress.tokens'),
    maxConcurrentRequests: Number(i.maxConcurrentRequests),
    maxInflightPublishes: Number(i.maxInflightPublishes),
  };
  if (!isLoopbackHost(ingress.host) && Object.keys(ingress.tokens).length === 0) {
    fail('ingress.tokens', `required when ingress.host (${ingress.host}) is not loopback, or anyone who reaches the port can have notifications signed and sent: set NOTIFY_INGRESS_TOKENS=name:token`);
  }

  const admin: AdminConfig = { port: Number(raw.admin.port), host: raw.admin.host, token: orNull(raw.admin.token) };
  if (!isLoopbackHost(admin.host) && !admin.token) {
    fail('admin.token', `required when admin.host (${admin.host}) is not loopback: set NOTIFY_ADMIN_TOKEN`);
  }

  const l = raw.limits;
  const limits: LimitsConfig = {
    urlMaxLength: Number(l.urlMaxLength),
    idMaxLength: Number(l.idMaxLength),
    maxHeaders: Number(l.maxHeaders),
    headerMaxBytes: Number(l.headerMaxBytes),
    bodyMaxBytes: Number(l.bodyMaxBytes),
  };

  const s = raw.signing;
  const secrets = s.secrets ?? [];
  const scheme: SigningScheme = orNull(s.scheme) ?? (secrets.length > 0 ? 'standard' : 'none');
  const signing: SigningConfig = { scheme, secrets, keyFile: orNull(s.keyFile), threads: Number(s.threads) };
  if (scheme === 'standard' && signing.secrets.length === 0) fail('signing.secrets', 'scheme standard needs NOTIFY_SIGNING_SECRET');
  if (scheme === 'rsa2') {
    if (!signing.keyFile) fail('signing.keyFile', 'scheme rsa2 needs NOTIFY_SIGNING_KEY_FILE');
    // A key the signer cannot use must stop start-up (exit 78) or a reload,
    // not fail every delivery later.
    try {
      loadRsaPrivateKey(signing.keyFile);
    } catch (err) {
      fail('signing.keyFile', (err as Error).message);
    }
  }
  signing.secrets.forEach((secret, i) => {
    if (decodeWebhookSecret(secret) === null) fail('signing.secrets', `secret #${i + 1} is not whsec_<base64>`);
  });

  const svms = durations(raw.supervisor, 'supervisor');
  const supervisor: SupervisorConfig = {
    drainTimeoutMs: svms('drainTimeout', 0, 3_600_000),
    restartBaseMs: svms('restartBase', 1, 60_000),
    restartMaxMs: svms('restartMax', 1, 3_600_000),
    restartResetMs: svms('restartReset', 1, 3_600_000),
    crashloopRestarts: Number(raw.supervisor.crashloopRestarts),
    crashloopWindowMs: svms('crashloopWindow', 1, 3_600_000),
  };

  const metrics: MetricsConfig = { queueSampleCron: raw.metrics.queueSampleCron };
  if (!cron.validate(metrics.queueSampleCron)) fail('metrics.queueSampleCron', `"${metrics.queueSampleCron}" is not a cron expression`);

  const deadRedrive: DeadRedriveConfig = { cron: orNull(raw.deadRedrive.cron), limit: Number(raw.deadRedrive.limit) };
  if (deadRedrive.cron !== null && !cron.validate(deadRedrive.cron)) fail('deadRedrive.cron', `"${deadRedrive.cron}" is not a cron expression`);
  const database: DatabaseConfig = { url: orNull(raw.database.url), poolSize: Number(raw.database.poolSize) };

  const mc = raw.merchants;
  const mcms = durations(mc, 'merchants');
  const merchants: MerchantsConfig = {
    required: flag(mc.required),
    autoDisableAfterMs: mcms('autoDisableAfter', 1000, 365 * 86_400_000),
    autoDisableCron: mc.autoDisableCron,
    rotationGraceMs: mcms('rotationGrace', 0, 30 * 86_400_000),
    refreshMs: mcms('refresh', 100, 3_600_000),
    secretsKey: orNull(mc.secretsKey),
  };
  if (!cron.validate(merchants.autoDisableCron)) fail('merchants.autoDisableCron', `"${merchants.autoDisableCron}" is not a cron expression`);
  if (merchants.secretsKey !== null && secretsKeyBytes(merchants.secretsKey) === null) {
    fail('merchants.secretsKey', 'must be 32 bytes in base64 (44 characters) or hex (64 characters): e.g. openssl rand -base64 32');
  }
  if (merchants.required && database.url === null) fail('merchants.required', 'needs a database (NOTIFY_DATABASE_URL): merchants live there');

  const history: HistoryConfig = {
    enabled: flag(raw.history.enabled),
    retentionMs: durations(raw.history, 'history')('retention', 86_400_000, 3650 * 86_400_000),
    retentionCron: raw.history.retentionCron,
  };
  if (!cron.validate(history.retentionCron)) fail('history.retentionCron', `"${history.retentionCron}" is not a cron expression`);

  return deepFreeze({
    amqpUrl,
    prefix,
    queueType,
    scheduleMs,
    delivery,
    ingress,
    admin,
    limits,
    signing,
    supervisor,
    metrics,
    deadRedrive,
    logLevel,
    log: { attempts: raw.log.attempts },
    database,
    merchants,
    history,
  });
}

function readJsonFile(path: string, key: string): Raw {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail(key, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!isObject(v)) fail(key, `${path} must hold a JSON object`);
    return v;
  } catch (err) {
    if ((err as NotifyError).code === ErrorCodes.CONFIG_INVALID) throw err;
    fail(key, `${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Loads `config/default.json`, then the file from `--config`/`NOTIFY_CONFIG`,
 * then the `NOTIFY_*` environment variables; validates once and freezes.
 */
export function loadConfig(opts: { configFile?: string | null; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = opts.env ?? process.env;
  let raw = readJsonFile(defaultConfigPath(), 'config');
  const file = opts.configFile ?? env.NOTIFY_CONFIG ?? null;
  if (file) raw = mergeRaw(raw, readJsonFile(file, 'config'));
  raw = mergeRaw(raw, envOverrides(env));
  return parseConfig(raw);
}

/**
 * An AMQP URL, or a comma-separated list of them, with every password
 * replaced, for logs and status. Text that does not parse as a URL is
 * scrubbed of every `//user:password@` it holds, wherever it is.
 */
export function redactUrl(url: string): string {
  return url
    .split(',')
    .map((part) => {
      try {
        const u = new URL(part.trim());
        if (u.password) u.password = '***';
        return u.toString();
      } catch {
        return part.replace(/\/\/([^:@/\s,]+):[^@/\s,]*@/g, '//$1:***@');
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
  const restartRequired = notes.length > 0;
  notes.push('delivery, signing, limits and log level applied');
  return { restartRequired, notes };
}
