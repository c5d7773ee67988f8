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
import { deepFreeze, type Config, type DeliveryConfig, type IngressConfig, type AdminConfig, type LimitsConfig, type SigningConfig, type SigningScheme, type SupervisorConfig, type MetricsConfig, type DeadRedriveConfig, type DatabaseConfig, type MerchantsConfig, type HistoryConfig, type PerOriginConfig, secretsKeyBytes, missingPortToken, MIN_TOKEN_LENGTH } from './config-model.js';

export * from './config-model.js';

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
  str('NOTIFY_DELIVERY_SHARE_CONNECTIONS', 'delivery.perOrigin.shareConnections');
  str('NOTIFY_DELIVERY_WARM_UP', 'delivery.warmUp');
  str('NOTIFY_DELIVERY_WARM_UP_BROKER', 'delivery.warmUpThroughBroker');
  str('NOTIFY_DELIVERY_BUNDLE_MAX', 'delivery.bundleMax');
  str('NOTIFY_DELIVERY_CONSUMER_LANES', 'delivery.consumerLanes');
  str('NOTIFY_DELIVERY_DELAY_FROM_START', 'delivery.delayFromStart');
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
    shareConnections: flag(o.shareConnections),
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
    if (!m || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) fail(key, `entry #${i + 1} "${c}" is not a CIDR`);
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

/** The loader's validator, compiled on first use from the shared first-error ajv: it reports one problem, `config check` all. */
let validator: Validator<MergedConfig> | null = null;

/**
 * Validates a raw (merged) configuration and returns the frozen `Config`.
 * Throws `CONFIG_INVALID` naming the first bad key. Types, ranges, fixed
 * sets and unknown keys are the schema's (`MergedConfigSchema`); what
 * follows converts text and checks what depends on several keys, files
 * or parsers.
 */
export interface ParseOptions {
  /**
   * False for a tool that never signs (`notifyd ctl`, `publish`, `migrate`):
   * the signing secrets and key file are not required or read, so an
   * operator's shell or a producer needs neither the service's secrets nor
   * read access to its private key. Default true.
   */
  readonly checkSigning?: boolean;
}

export function parseConfig(raw: Raw, opts: ParseOptions = {}): Config {
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
    if (!isDnsServer(x)) fail('delivery.dnsServers', `entry #${i + 1} "${x}" is not an IP address with an optional port ([ipv6]:port for IPv6)`);
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
    warmUpThroughBroker: Number(d.warmUpThroughBroker),
    warmUpTiers: d.warmUpTiers ?? [],
    bundleMax: Number(d.bundleMax),
    consumerLanes: Number(d.consumerLanes),
    deadOnStatus: d.deadOnStatus,
    success: { status: Array.isArray(d.success.status) ? [...d.success.status] : '2xx', ...(d.success.bodyEquals === undefined ? {} : { bodyEquals: d.success.bodyEquals }) },
    allowPrivateNetworks: flag(d.allowPrivateNetworks),
    allowCidrs: parseCidrs(d.allowCidrs, 'delivery.allowCidrs'),
    dnsServers: d.dnsServers,
    dnsTimeoutMs: dms('dnsTimeout', 10, 60_000),
    delayFromStartMs: dms('delayFromStart', 0, 60_000),
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
  const admin: AdminConfig = { port: Number(raw.admin.port), host: raw.admin.host, token: orNull(raw.admin.token) };
  const unguarded = missingPortToken(ingress, admin);
  if (unguarded) fail(unguarded.key, unguarded.why);

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
  const checkSigning = opts.checkSigning ?? true;
  if (checkSigning && scheme === 'standard' && signing.secrets.length === 0) fail('signing.secrets', 'scheme standard needs NOTIFY_SIGNING_SECRET');
  if (checkSigning && scheme === 'rsa2' && !signing.keyFile) fail('signing.keyFile', 'scheme rsa2 needs NOTIFY_SIGNING_KEY_FILE');
  // A key the signer cannot use must stop start-up (exit 78) or a reload, not fail every delivery later: also when
  // only rsa2 merchants use it (the daemon's own scheme another).
  if (checkSigning && signing.keyFile) {
    try {
      loadRsaPrivateKey(signing.keyFile);
    } catch (err) {
      fail('signing.keyFile', (err as Error).message);
    }
  }
  if (checkSigning) {
    signing.secrets.forEach((secret, i) => {
      if (decodeWebhookSecret(secret) === null) fail('signing.secrets', `secret #${i + 1} is not whsec_<base64>`);
    });
  }

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
export function loadConfig(opts: { configFile?: string | null; env?: NodeJS.ProcessEnv } & ParseOptions = {}): Config {
  const env = opts.env ?? process.env;
  let raw = readJsonFile(defaultConfigPath(), 'config');
  const file = opts.configFile ?? env.NOTIFY_CONFIG ?? null;
  if (file) raw = mergeRaw(raw, readJsonFile(file, 'config'));
  raw = mergeRaw(raw, envOverrides(env));
  return parseConfig(raw, opts);
}

