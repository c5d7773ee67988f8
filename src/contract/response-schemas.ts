import { Type, type TSchema } from '@sinclair/typebox';
import { ErrorCodes } from '../core/errors.js';
import { MerchantInputSchema } from './merchant-input.js';

/**
 * JSON Schemas of what the ingress and admin ports answer: the error body
 * every refusal carries, the notification answers, the probes, and the admin
 * and merchant answers. Used by the OpenAPI documents and by the contract
 * test, which checks the running daemon's real answers against them.
 */

const nullable = (s: TSchema): TSchema => Type.Union([s, Type.Null()]);
/** A string of a fixed set, as an `enum` (client generators make an enum type of it). */
const stringEnum = <T extends string>(values: readonly T[], description?: string): TSchema =>
  Type.Unsafe<T>({ type: 'string', enum: [...values], ...(description === undefined ? {} : { description }) });

/** `{ error: { code, message, field? }, id? }`: `code` is one of the one table in core/errors.ts. */
export const ErrorBody = Type.Object(
  {
    error: Type.Object(
      {
        code: stringEnum(Object.values(ErrorCodes), 'stable: decide on it, not on the message'),
        message: Type.String(),
        field: Type.Optional(Type.String({ description: 'the offending input field (VALIDATION)' })),
      },
      { additionalProperties: false },
    ),
    id: Type.Optional(
      Type.String({
        description:
          "the notification's id (the one given, or the one the ingress made) when it was refused after it was read and validated: retry with it, since a 503 after a confirm timeout may still have been taken",
      }),
    ),
  },
  { additionalProperties: false },
);

/** `202` of `POST /v1/notifications`: the broker confirmed it. */
export const Accepted = Type.Object({ id: Type.String() }, { additionalProperties: false });

/** One item of a batch answer: accepted, or refused with its index and error. */
export const BatchItem = Type.Union([
  Type.Object({ id: Type.String(), status: Type.Literal(202) }, { additionalProperties: false }),
  Type.Object({ index: Type.Integer({ minimum: 0 }), status: Type.Integer({ minimum: 400, maximum: 599 }), error: ErrorBody.properties.error, id: ErrorBody.properties.id }, { additionalProperties: false }),
]);

/** `POST /v1/notifications:batch`: 202 all accepted, 207 a mix, 503 all refused by the broker. */
export const BatchAnswer = Type.Object({ accepted: Type.Integer({ minimum: 0 }), results: Type.Array(BatchItem) }, { additionalProperties: false });

/** `GET /healthz`. */
export const Health = Type.Object({ ok: Type.Literal(true) }, { additionalProperties: false });
/** `GET /readyz` (200 ready, 503 not, with the reasons). */
export const Readiness = Type.Object({ ready: Type.Boolean(), reasons: Type.Array(Type.String()) }, { additionalProperties: false });

const WorkerState = stringEnum(['starting', 'running', 'paused', 'backoff', 'crashloop', 'draining', 'stopped']);

/** One tier of `/admin/status`, and the answer of pause/resume. */
export const TierStatus = Type.Object({
  index: Type.Integer({ minimum: 0 }),
  delayMs: Type.Number({ minimum: 0 }),
  state: WorkerState,
  pid: nullable(Type.Integer()),
  restarts: Type.Integer({ minimum: 0 }),
  inflight: Type.Integer({ minimum: 0 }),
  brokerNode: nullable(Type.String()),
  paused: Type.Boolean({ description: 'paused by an operator, whatever its worker\'s state (it stays paused through a restart)' }),
});

/** `GET /admin/status` (DESIGN §7, with the README's extra fields). */
export const DaemonStatus = Type.Object({
  prefix: Type.String(),
  tiers: Type.Array(TierStatus),
  ingress: Type.Object({ pid: nullable(Type.Integer()), state: WorkerState, restarts: Type.Integer(), port: nullable(Type.Integer()), brokerNode: nullable(Type.String()) }),
  broker: Type.Object({ connected: Type.Boolean(), url: Type.String(), node: nullable(Type.String()) }),
  recorder: nullable(Type.Object({ pid: nullable(Type.Integer()), state: WorkerState, restarts: Type.Integer(), brokerNode: nullable(Type.String()) })),
});

/** `POST /admin/reload`. */
export const ReloadAnswer = Type.Object({ applied: Type.Boolean(), restartRequired: Type.Boolean(), notes: Type.Array(Type.String()) });
/** `POST /admin/dead/redrive`. */
export const RedriveAnswer = Type.Object({
  moved: Type.Integer({ minimum: 0 }),
  skipped: Type.Integer({ minimum: 0, description: 'copies kept parked: blocked or invalid ones without force, those of a merchant still disabled, and those of a resend whose ladder the history has not recorded yet' }),
  superseded: Type.Integer({ minimum: 0, description: 'copies dropped because the history shows the notification sent again after it was parked' }),
  remaining: Type.Integer({ minimum: 0 }),
});

/** `GET /admin/dead`: parked notifications, listed without consuming them. */
export const DeadListing = Type.Object({
  total: Type.Integer({ minimum: 0 }),
  byReason: Type.Record(Type.String(), Type.Integer()),
  byMerchant: Type.Record(Type.String(), Type.Integer(), { description: '`-` for notifications without a merchant' }),
  messages: Type.Array(
    Type.Object({
      id: Type.String(),
      reason: Type.String(),
      tier: nullable(Type.Integer()),
      attempts: nullable(Type.Integer()),
      lastError: nullable(Type.String()),
      deadAt: nullable(Type.Number()),
      url: nullable(Type.String()),
      merchant: nullable(Type.String()),
      redriven: Type.Integer({ minimum: 0 }),
    }),
  ),
});

/** `GET /admin/origins`: the worst origins of each tier. */
export const OriginsReport = Type.Object({
  origins: Type.Array(
    Type.Object({
      tier: Type.Integer(),
      origin: Type.String(),
      state: stringEnum(['failing', 'limited', 'ok']),
      limit: Type.Number(),
      inflight: Type.Integer(),
      waiting: Type.Integer(),
      deferred: Type.Integer(),
      skipped: Type.Integer(),
      consecutiveFailures: Type.Integer(),
      lastError: nullable(Type.String()),
      lastErrorAt: nullable(Type.Number()),
      nextProbeInMs: nullable(Type.Number()),
      rttMs: Type.Number(),
    }),
  ),
  counts: Type.Object({ failing: Type.Integer(), limited: Type.Integer() }),
});

const Success = Type.Object({
  status: Type.Union([Type.Literal('2xx'), Type.Array(Type.Integer({ minimum: 100, maximum: 599 }))]),
  bodyEquals: Type.Optional(Type.String()),
});
const MerchantScheme = stringEnum(['standard', 'rsa2', 'none']);

/** What an operator sends to create (all but the optional ones) or patch (any) a merchant. */
export const MerchantInput = Type.Unsafe<Record<string, unknown>>(MerchantInputSchema);

/** A merchant as the admin API shows it: never a secret, only fingerprints. */
export const Merchant = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    signing: MerchantScheme,
    allowedOrigins: Type.Array(Type.String()),
    maxConcurrency: nullable(Type.Integer()),
    maxAttempts: nullable(Type.Integer()),
    success: nullable(Success),
    enabled: Type.Boolean(),
    disabledReason: nullable(Type.String()),
    failingSince: nullable(Type.String()),
    secrets: Type.Array(Type.Object({ fingerprint: Type.String(), createdAt: Type.String(), expiresAt: nullable(Type.String()) }, { additionalProperties: false })),
    createdAt: Type.String(),
    updatedAt: Type.String(),
  },
  { additionalProperties: false },
);

/** Show, enable, disable: the merchant. */
export const MerchantAnswer = Type.Object({ merchant: Merchant }, { additionalProperties: false });
/** Create, patch and rotate: the new secret (`whsec_…`) is here, in this answer only, or null when none was made. */
export const MerchantWithSecret = Type.Object({ merchant: Merchant, secret: nullable(Type.String()) }, { additionalProperties: false });
/** `GET /admin/merchants`: a page by id, and the cursor of the next one. */
export const MerchantPage = Type.Object({ merchants: Type.Array(Merchant), nextCursor: nullable(Type.String()) }, { additionalProperties: false });

// --- the delivery history (DESIGN §11) ---------------------------------------

const HistoryStatus = stringEnum(['pending', 'delivered', 'dead']);

/** A notification as the history shows it; times are ms epoch. */
export const HistoryNotification = Type.Object(
  {
    id: Type.String(),
    createdAt: Type.Number(),
    merchant: nullable(Type.String()),
    producer: nullable(Type.String({ description: 'the ingress token that submitted it' })),
    url: Type.String(),
    status: HistoryStatus,
    deadReason: nullable(Type.String({ description: 'exhausted, status-410, disabled, …' })),
    attempts: Type.Integer({ minimum: 0, description: 'over every ladder' }),
    lastAttemptAt: nullable(Type.Number()),
    lastStatus: nullable(Type.Integer()),
    lastError: nullable(Type.String()),
    deliveredAt: nullable(Type.Number()),
    deadAt: nullable(Type.Number()),
    resendable: Type.Boolean({ description: 'the history holds the notification itself' }),
  },
  { additionalProperties: false },
);

/** `GET …/notifications/<id>`: the notification, its ladders and its attempts. */
export const HistoryTimeline = Type.Object(
  {
    notification: HistoryNotification,
    runs: Type.Array(Type.Object({ run: Type.String(), startedAt: Type.Number(), via: Type.String(), producer: nullable(Type.String()) }, { additionalProperties: false })),
    attempts: Type.Array(
      Type.Object(
        {
          run: Type.String({ description: "its ladder ('' when the ladder's start was never recorded)" }),
          attempt: Type.Integer({ minimum: 0 }),
          tier: Type.Integer({ minimum: 0 }),
          startedAt: Type.Number(),
          durationMs: Type.Number(),
          status: nullable(Type.Integer()),
          outcome: stringEnum(['success', 'retry', 'dead', 'skipped']),
          skipped: Type.Boolean(),
          reason: nullable(Type.String()),
          error: nullable(Type.String()),
          answer: nullable(Type.String({ description: "the first KiB of the merchant's answer" })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** `GET …/notifications?…`: a page, newest first, and the cursor of the next one (null on the last). */
export const HistoryPage = Type.Object({ notifications: Type.Array(HistoryNotification), nextCursor: nullable(Type.String()) }, { additionalProperties: false });

/** `POST …/notifications/<id>/resend`: a new ladder. */
export const ResendAnswer = Type.Object({ id: Type.String(), run: Type.String(), previousStatus: Type.String() }, { additionalProperties: false });

/** What a recover resent, and what it could not. */
export const RecoverAnswer = Type.Object(
  {
    merchant: Type.String(),
    since: Type.Number(),
    until: Type.Number(),
    matched: Type.Integer({ minimum: 0 }),
    resent: Type.Integer({ minimum: 0 }),
    failed: Type.Array(Type.Object({ id: Type.String(), error: ErrorBody.properties.error }, { additionalProperties: false })),
    stopped: nullable(
      Type.Object(
        { error: ErrorBody.properties.error, at: nullable(Type.String({ description: 'id of the first notification it could not resend; null when a page of the window could not be read' })) },
        { additionalProperties: false, description: 'set when the broker or the database failed part-way: what was resent so far is counted' },
      ),
    ),
  },
  { additionalProperties: false },
);
/** A recover that stopped (503): the error, and the counts so far. */
export const RecoverStopped = Type.Object({ error: ErrorBody.properties.error, ...Type.Partial(RecoverAnswer).properties }, { additionalProperties: false, description: "the counts are absent when it failed before the first page" });
