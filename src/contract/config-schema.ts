import { Type, type Static, type TProperties, type TSchema } from '@sinclair/typebox';
import { DURATION_RE } from '../core/schedule.js';
import { errorPath, type ErrorObject } from './ajv.js';

/**
 * The JSON Schema of the configuration: the one place its keys, types,
 * ranges and fixed sets are written. The loader validates the merged
 * configuration against it (`MergedConfigSchema`), `notifyd config check`
 * and editors a file (`ConfigSchema`, docs/config.schema.json). What
 * depends on several keys, on files, or on a parser (schedules, cron
 * expressions, AMQP URLs, CIDRs, keys, duration ranges) is checked by
 * `parseConfig`. Numbers and booleans may be written as strings (`"8080"`,
 * `"on"`), as environment variables are: their patterns hold the same
 * ranges and words as the numbers and booleans.
 */

const desc = (description?: string): { description?: string } => (description ? { description } : {});

/**
 * A pattern for the decimal text of the integers `min`..`max` (leading zeros
 * and surrounding blanks allowed, as `Number()` reads them), so that text
 * from the environment is held to the same range as a number in a file.
 */
export function intTextPattern(min: number, max: number): string {
  return `^\\s*0*(${digitRanges(min, max).join('|')})\\s*$`;
}

/** Alternatives matching exactly the integers lo..hi written without leading zeros. */
function digitRanges(lo: number, hi: number): string[] {
  const [a, b] = [String(lo), String(hi)];
  if (lo > hi) return [];
  if (a.length < b.length) return [...digitRanges(lo, 10 ** a.length - 1), ...digitRanges(10 ** a.length, hi)];
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  if (i === a.length) return [a];
  // A shared prefix, a range of one digit, then any digits; the ragged ends (such as 65530-65535) recurse.
  const [prefix, rest] = [a.slice(0, i), a.length - i - 1];
  const [fromFloor, toCeiling] = [/^0*$/.test(a.slice(i + 1)), /^9*$/.test(b.slice(i + 1))];
  const [from, to] = [Number(a[i]) + (fromFloor ? 0 : 1), Number(b[i]) - (toCeiling ? 0 : 1)];
  return [
    ...(fromFloor ? [] : digitRanges(lo, Number(`${prefix}${a[i]}${'9'.repeat(rest)}`))),
    ...(from <= to ? [`${prefix}${from === to ? from : `[${from}-${to}]`}${rest === 0 ? '' : rest === 1 ? '\\d' : `\\d{${rest}}`}`] : []),
    ...(toCeiling ? [] : digitRanges(Number(`${prefix}${b[i]}${'0'.repeat(rest)}`), hi)),
  ];
}

const int = (minimum: number, maximum: number, description?: string) =>
  Type.Unsafe<number | string>({ type: ['integer', 'string'], minimum, maximum, pattern: intTextPattern(minimum, maximum), ...desc(description) });
/** The loader reads these words in any case; JSON Schema patterns have no case-insensitive flag. */
const caseless = (word: string): string => word.replace(/[a-z]/g, (c) => `[${c}${c.toUpperCase()}]`);
const bool = (description?: string) =>
  Type.Unsafe<boolean | string>({ type: ['boolean', 'string'], pattern: `^(${['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'].map(caseless).join('|')})$`, ...desc(description) });
/** What `parseDuration` reads. */
export const DURATION_PATTERN = DURATION_RE.source;

/** `500ms`, `15s`, `3m`, `1h`, `2d`, fractions allowed; a bare number is milliseconds. */
const duration = (description?: string) => Type.Unsafe<string | number>({ type: ['string', 'number'], pattern: DURATION_PATTERN, minimum: 0, ...desc(description) });
const str = (description?: string) => Type.String({ minLength: 1, ...desc(description) });
/** Null, an empty string or a missing key are all "not set". */
const optStr = (description?: string) => Type.Optional(Type.Unsafe<string | null>({ type: ['string', 'null'], ...desc(description) }));
const oneOf = <const T extends string>(values: readonly T[], description?: string) => Type.Unsafe<T>({ type: 'string', enum: [...values], ...desc(description) });
/** A list that may also be written as null (none). */
const optList = <T extends TSchema>(items: T, description?: string) => Type.Optional(Type.Unsafe<Static<T>[] | null>({ type: ['array', 'null'], items, ...desc(description) }));
/** Keys starting with `$` are comments to the loader, at any level. */
const COMMENTS = { '^\\$': {} };
/** Other unknown keys are refused: a typo in a config file must not be silently ignored. */
const section = <T extends TProperties>(props: T) => Type.Object(props, { additionalProperties: false, patternProperties: COMMENTS });
const statuses = Type.Array(Type.Integer({ minimum: 100, maximum: 599 }));

/**
 * The merged configuration the loader reads (config/default.json, the file,
 * then `NOTIFY_*` variables): every key not marked optional is there.
 */
export const MergedConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.Unknown({ description: 'for editors: the path or URL of this schema' })),
    amqpUrl: str('AMQP URL, or the comma-separated nodes of one RabbitMQ cluster (NOTIFY_AMQP_URL)'),
    prefix: Type.String({ pattern: '^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$', description: 'name prefix of every broker object (NOTIFY_PREFIX)' }),
    queueType: oneOf(['quorum', 'classic']),
    schedule: Type.Unsafe<string | (string | number)[]>({
      type: ['string', 'array'],
      description: 'a preset (default, alipay, wechatpay, svix) or a list of delays such as "0s,1s,3s" (NOTIFY_SCHEDULE)',
    }),
    logLevel: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    log: section({ attempts: oneOf(['all', 'failures', 'off'], 'which attempts get a log line') }),
    delivery: section({
      timeout: duration('whole-attempt deadline'),
      connectTimeout: duration(),
      headersTimeout: duration(),
      maxResponseBytes: int(0, 16 * 1024 * 1024),
      concurrency: int(1, 10_000, 'HTTP attempts in flight per tier worker'),
      prefetch: Type.Optional(Type.Unsafe<number | string | null>({ type: ['integer', 'string', 'null'], minimum: 1, maximum: 65_535, pattern: intTextPattern(1, 65_535), description: 'null: twice the concurrency' })),
      connectionsPerOrigin: int(1, 10_000),
      warmUp: int(0, 100_000, 'synthetic notifications a warmed tier worker runs through its own pipeline at start (no broker, no network), at most 5 s'),
      warmUpThroughBroker: int(0, 100_000, 'synthetic notifications a warmed tier worker then sends through the broker to itself, on a connection and private queues of its own, before it consumes (stops after 5 s, its teardown bounded; 0: none)'),
      bundleMax: int(0, 1000, 'most skips or deferrals to one queue that share a broker message (0 or 1: each alone)'),
      consumerLanes: int(0, 16, 'old consumer channels a tier worker keeps while their long-held deliveries finish (0: never moves its consumer); about (consumerLanes + 1) × prefetch unacked at most'),
      warmUpTiers: optList(Type.Integer({ minimum: 0, maximum: 99 }), 'the tiers that warm up at start (default [1]: the first retry tier, idle until a burst of failures)'),
      perOrigin: section({
        maxConcurrency: int(1, 10_000),
        initialLimit: int(1, 10_000),
        failureThreshold: int(1, 1000),
        probeInterval: duration(),
        maxProbeInterval: duration(),
        queueTarget: duration(),
        maxOrigins: int(16, 10_000_000),
        maxPools: int(1, 1_000_000),
        poolIdle: duration(),
        shareConnections: bool('http origins whose names resolve to one address and port share its idle keep-alive connections (each request names its origin in Host)'),
      }),
      deadOnStatus: statuses,
      success: Type.Object(
        { status: Type.Optional(Type.Unsafe<string | number[]>({ type: ['string', 'array'], pattern: '^2xx$', minItems: 1, items: { type: 'integer', minimum: 100, maximum: 599 }, 'x-error': { pattern: 'must be "2xx" or a list of HTTP statuses', minItems: 'must hold at least one HTTP status' } })), bodyEquals: Type.Optional(Type.String()) },
        { additionalProperties: false },
      ),
      allowPrivateNetworks: bool('deliver to loopback and private addresses too (SSRF guard off)'),
      allowCidrs: Type.Array(Type.String(), { description: 'CIDRs allowed although private, e.g. 127.0.0.0/8' }),
      dnsServers: Type.Array(Type.String(), { description: 'ip, ip:port or [ipv6]:port; empty: the system resolver' }),
      dnsTimeout: duration(),
      delayFromStart: duration('how much of a failed attempt\'s own time its retry delay may absorb: the next attempt is due one delay after its request went out, or one delay after its hand-on less this when the attempt took longer; never more than half the delay (0: from the hand-on)'),
    }),
    ingress: section({
      port: int(0, 65535, '0 picks a free port'),
      host: str(),
      maxBodyBytes: int(1024, 64 * 1024 * 1024),
      maxBatch: int(1, 10_000),
      token: optStr('legacy: the producer "default"'),
      tokens: Type.Optional(Type.Unsafe<Record<string, string> | null>({ type: ['object', 'null'], additionalProperties: { type: 'string' }, description: 'producer name → bearer token (at least 16 characters)' })),
      maxConcurrentRequests: int(1, 100_000),
      maxInflightPublishes: int(1, 1_000_000),
    }),
    admin: section({ port: int(0, 65535), host: str(), token: optStr('bearer token (at least 16 characters, no spaces); required when host is not loopback') }),
    limits: section({
      urlMaxLength: int(16, 64 * 1024),
      // The id is the AMQP message-id, a short string of at most 255 bytes (ids are ASCII): a longer one could
      // not be published, and every retry of it would fail the same way.
      idMaxLength: int(8, 255),
      maxHeaders: int(0, 1000),
      headerMaxBytes: int(16, 64 * 1024),
      bodyMaxBytes: int(1, 64 * 1024 * 1024),
    }),
    signing: section({
      scheme: Type.Optional(Type.Unsafe<'none' | 'standard' | 'rsa2' | null | ''>({ type: ['string', 'null'], enum: ['none', 'standard', 'rsa2', null, ''] })),
      secrets: optList(Type.String({ pattern: '^whsec_[A-Za-z0-9+/=]{8,}$', 'x-error': 'must be a whsec_<base64> secret' })),
      keyFile: optStr('PEM private key for rsa2'),
      threads: int(1, 64),
    }),
    supervisor: section({
      drainTimeout: duration(),
      restartBase: duration(),
      restartMax: duration(),
      restartReset: duration(),
      crashloopRestarts: int(1, 1000),
      crashloopWindow: duration(),
    }),
    metrics: section({ queueSampleCron: str('node-cron expression (with seconds)') }),
    deadRedrive: section({ cron: optStr('node-cron expression; null: off'), limit: int(1, 1_000_000) }),
    database: section({ url: Type.Optional(Type.Unsafe<string | null>({ type: ['string', 'null'], pattern: '^(postgres(ql)?://\\S+)?$', 'x-error': 'must be a postgres:// or postgresql:// URL' })), poolSize: int(1, 100) }),
    merchants: section({
      required: bool(),
      autoDisableAfter: duration(),
      autoDisableCron: str(),
      rotationGrace: duration(),
      refresh: duration(),
      secretsKey: optStr('32 bytes, base64 or hex'),
    }),
    history: section({ enabled: bool(), retention: duration(), retentionCron: str() }),
  },
  { additionalProperties: false, patternProperties: COMMENTS, title: 'notifyd configuration' },
);

/** What the merged configuration is once it passed `MergedConfigSchema`: numbers, booleans and durations maybe still text. */
export type MergedConfig = Static<typeof MergedConfigSchema>;

/** The configuration file: the same schema with no key required, as config/default.json fills in the rest. */
export const ConfigSchema = JSON.parse(JSON.stringify(MergedConfigSchema), (k, v: unknown) => (k === 'required' && Array.isArray(v) ? undefined : v)) as TSchema;

/** The part of a schema node an error's wording is made from. */
type Node = { type?: string | string[]; enum?: unknown[]; pattern?: string; minimum?: number; maximum?: number; minLength?: number; properties?: Record<string, Node>; 'x-error'?: unknown };

const TYPE_WORDS: Record<string, string> = { integer: 'an integer', number: 'a number', string: 'a string', boolean: 'true or false', array: 'a list', object: 'an object', null: 'null' };

/** What a value is, without the value: a mistyped one may be a secret or a password. */
const kindOf = (v: unknown): string => (v === undefined ? 'nothing' : v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

/** The wording for a value `data` that fails `s` by `keyword`: one per kind of value (number, duration, fixed set...). */
function wording(s: Node, data: unknown, keyword: string, message: string | undefined): string {
  const types = [s.type ?? []].flat();
  // A scalar is shown; a list or an object only by its kind: it may hold URLs with passwords (a cluster's amqpUrl as a list).
  const got = data !== null && typeof data === 'object' ? kindOf(data) : JSON.stringify(data);
  const own = s['x-error'];
  if (own !== null && typeof own === 'object' && typeof (own as Record<string, unknown>)[keyword] === 'string') return (own as Record<string, string>)[keyword]!;
  if (s.enum) return `must be one of ${s.enum.filter((v) => v !== null && v !== '').join(', ')} (got ${got})`;
  if (s.pattern === DURATION_PATTERN) return `must be a duration such as 500ms, 15s, 3m, 1h, 1d (got ${got})`;
  if (types.includes('integer')) return `must be an integer from ${s.minimum} to ${s.maximum}${types.includes('null') ? ', or null' : ''} (got ${got})`;
  if (types.includes('boolean')) return `must be true or false (got ${got})`;
  if (s.minLength === 1) return `must be a non-empty string (got ${got})`;
  if (keyword === 'type') return `must be ${types.map((t) => TYPE_WORDS[t] ?? t).join(' or ')} (got ${kindOf(data)})`;
  // The value is not repeated: a URL or a secret that fails its pattern would be logged.
  if (keyword === 'pattern') return typeof own === 'string' ? own : `must match /${s.pattern}/`;
  return message ?? 'is invalid';
}

/**
 * The dotted key (`delivery.perOrigin.maxPools`, '' for the whole) and a
 * short wording of one error of a validator compiled with `verbose` from
 * these schemas, the loader's first error or each of `config check`'s.
 * An entry of a list is named by the list, its number in the wording
 * (`delivery.deadOnStatus: entry #2 must be ...`), as the loader always
 * named bad lists. `root` is the validated value.
 */
export function configProblem(e: ErrorObject, root: unknown): { key: string; why: string } {
  const key: string[] = [];
  let entry: number | null = null;
  let node = root;
  for (const part of errorPath(e)) {
    if (Array.isArray(node)) entry ??= Number(part);
    else key.push(part);
    node = (node as Record<string, unknown> | null | undefined)?.[part];
  }
  const parent = e.parentSchema as Node;
  let why: string;
  if (e.keyword === 'additionalProperties') why = 'unknown key';
  // A missing key is worded as its value would be, `(got undefined)`.
  else if (e.keyword === 'required') why = wording(parent.properties?.[key.at(-1)!] ?? {}, undefined, 'type', e.message);
  else why = wording(parent, e.data, e.keyword, e.message);
  return { key: key.join('.'), why: entry === null ? why : `entry #${entry + 1} ${why}` };
}
