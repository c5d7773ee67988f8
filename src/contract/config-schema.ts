import { Type, type TSchema } from '@sinclair/typebox';
import { DURATION_RE } from '../core/schedule.js';

/**
 * The JSON Schema of a configuration file (config/default.json, `--config`),
 * for `notifyd config check` and for editors (docs/config.schema.json).
 * It says what the file may hold: keys, types, ranges, fixed sets. What
 * depends on several keys, on files, or on a parser (schedules, cron
 * expressions, AMQP URLs, CIDRs, keys) is checked by `parseConfig`, which
 * `config check` runs too. Numbers and booleans may be written as strings
 * (`"8080"`, `"on"`): the loader takes them so, as environment variables are.
 */

const int = (minimum: number, maximum: number, description?: string): TSchema =>
  Type.Unsafe<number>({ type: ['integer', 'string'], minimum, maximum, pattern: INT_TEXT_PATTERN, ...(description ? { description } : {}) });
const bool = (description?: string): TSchema =>
  Type.Unsafe<boolean>({ type: ['boolean', 'string'], pattern: '^(1|true|yes|on|0|false|no|off|TRUE|FALSE|True|False|YES|NO|Yes|No|ON|OFF|On|Off)$', ...(description ? { description } : {}) });
/** What `parseDuration` reads. */
export const DURATION_PATTERN = DURATION_RE.source;
/** Integers written as text (environment variables are). */
export const INT_TEXT_PATTERN = '^\\s*\\d+\\s*$';

/** `500ms`, `15s`, `3m`, `1h`, `2d`, fractions allowed; a bare number is milliseconds. */
const duration = (description?: string): TSchema =>
  Type.Unsafe<string | number>({ type: ['string', 'number'], pattern: DURATION_PATTERN, minimum: 0, ...(description ? { description } : {}) });
const str = (description?: string): TSchema => Type.String({ minLength: 1, ...(description ? { description } : {}) });
const optStr = (description?: string): TSchema => Type.Unsafe<string | null>({ type: ['string', 'null'], ...(description ? { description } : {}) });
const oneOf = (values: readonly string[], description?: string): TSchema => Type.Unsafe<string>({ type: 'string', enum: [...values], ...(description ? { description } : {}) });
/** Keys starting with `$` are comments to the loader, at any level. */
const COMMENTS = { '^\\$': {} };
const section = (props: Record<string, TSchema>, description?: string): TSchema =>
  Type.Partial(Type.Object(props, { additionalProperties: false, patternProperties: COMMENTS, ...(description ? { description } : {}) }));
const statuses = Type.Array(Type.Integer({ minimum: 100, maximum: 599 }));

/** The configuration file. Every key is optional in a file: config/default.json fills in the rest. */
export const ConfigSchema = Type.Partial(
  Type.Object(
    {
      $schema: Type.String({ description: 'for editors: the path or URL of this schema' }),
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
        prefetch: Type.Unsafe({ type: ['integer', 'string', 'null'], minimum: 1, maximum: 65_535, description: 'null: twice the concurrency' }),
        connectionsPerOrigin: int(1, 10_000),
        warmUp: int(0, 100_000, 'synthetic notifications a warmed tier worker runs through its own pipeline at start (no broker, no network), at most 5 s'),
        warmUpTiers: Type.Array(Type.Integer({ minimum: 0, maximum: 99 }), { description: 'the tiers that warm up at start (default [1]: the first retry tier, idle until a burst of failures)' }),
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
        }),
        deadOnStatus: statuses,
        success: Type.Object(
          { status: Type.Optional(Type.Unsafe({ type: ['string', 'array'], pattern: '^2xx$', minItems: 1, items: { type: 'integer', minimum: 100, maximum: 599 } })), bodyEquals: Type.Optional(Type.String()) },
          { additionalProperties: false },
        ),
        allowPrivateNetworks: bool('deliver to loopback and private addresses too (SSRF guard off)'),
        allowCidrs: Type.Array(Type.String(), { description: 'CIDRs allowed although private, e.g. 127.0.0.0/8' }),
        dnsServers: Type.Array(Type.String(), { description: 'ip, ip:port or [ipv6]:port; empty: the system resolver' }),
        dnsTimeout: duration(),
      }),
      ingress: section({
        port: int(0, 65535, '0 picks a free port'),
        host: str(),
        maxBodyBytes: int(1024, 64 * 1024 * 1024),
        maxBatch: int(1, 10_000),
        token: optStr('legacy: the producer "default"'),
        tokens: Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()], { description: 'producer name → bearer token (at least 16 characters)' }),
        maxConcurrentRequests: int(1, 100_000),
        maxInflightPublishes: int(1, 1_000_000),
      }),
      admin: section({ port: int(0, 65535), host: str(), token: optStr('bearer token; required when host is not loopback') }),
      limits: section({
        urlMaxLength: int(16, 64 * 1024),
        idMaxLength: int(8, 1024),
        maxHeaders: int(0, 1000),
        headerMaxBytes: int(16, 64 * 1024),
        bodyMaxBytes: int(1, 64 * 1024 * 1024),
      }),
      signing: section({
        scheme: Type.Unsafe<string | null>({ type: ['string', 'null'], enum: ['none', 'standard', 'rsa2', null, ''] }),
        secrets: Type.Array(Type.String({ pattern: '^whsec_[A-Za-z0-9+/=]{8,}$' })),
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
      database: section({ url: Type.Unsafe<string | null>({ type: ['string', 'null'], pattern: '^(postgres(ql)?://\\S+)?$' }), poolSize: int(1, 100) }),
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
  ),
);
