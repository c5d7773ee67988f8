import { Type, type TSchema } from '@sinclair/typebox';
import type { LimitsConfig } from '../core/config.js';
import { ListQuerySchema, RecoverInputSchema } from './history-params.js';
import { MERCHANT_ID_PATTERN, batchSchema, notificationSchema, type JsonSchema } from './notification-schema.js';
import * as R from './response-schemas.js';

/**
 * The HTTP API as a table: one entry per route of the ingress and admin
 * ports, naming its request and answers by schema. The OpenAPI documents
 * are generated from it (contract/openapi.ts), and the contract test checks
 * the running daemon's answers against the schemas it names. A new route is
 * one entry here.
 */

/** What the documents depend on in the configuration: the limits of a notification and of a batch. */
export interface ContractLimits {
  readonly limits: Pick<LimitsConfig, 'idMaxLength' | 'urlMaxLength' | 'maxHeaders'>;
  readonly maxBatch: number;
}

/** The named schemas, `#/components/schemas/<name>` in the documents. */
export function contractSchemas(c: ContractLimits): Record<string, TSchema> {
  return {
    Notification: Type.Unsafe(notificationSchema(c.limits)),
    NotificationBatch: Type.Unsafe(batchSchema(c.maxBatch, { $ref: '#/components/schemas/Notification' })),
    Accepted: R.Accepted,
    BatchAnswer: R.BatchAnswer,
    Error: R.ErrorBody,
    Health: R.Health,
    Readiness: R.Readiness,
    DaemonStatus: R.DaemonStatus,
    TierStatus: R.TierStatus,
    ReloadAnswer: R.ReloadAnswer,
    RedriveAnswer: R.RedriveAnswer,
    DeadListing: R.DeadListing,
    OriginsReport: R.OriginsReport,
    MerchantInput: R.MerchantInput,
    MerchantAnswer: R.MerchantAnswer,
    MerchantWithSecret: R.MerchantWithSecret,
    MerchantPage: R.MerchantPage,
    RotateInput: Type.Object({ grace: Type.Optional(Type.String({ description: 'how long the old secret keeps signing, e.g. 24h (default merchants.rotationGrace)' })) }, { additionalProperties: true }),
    OpenApiDocument: Type.Object({ openapi: Type.Literal('3.1.0'), info: Type.Object({}), paths: Type.Object({}) }, { description: 'an OpenAPI 3.1 document' }),
    HistoryTimeline: R.HistoryTimeline,
    HistoryPage: R.HistoryPage,
    ResendAnswer: R.ResendAnswer,
    RecoverInput: Type.Unsafe(RecoverInputSchema),
    RecoverAnswer: R.RecoverAnswer,
    RecoverStopped: R.RecoverStopped,
    DisableInput: Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: true }),
  };
}

/** The name of one of {@link contractSchemas}. */
export type SchemaName = keyof ReturnType<typeof contractSchemas>;
/** The daemon's two HTTP ports, one document each. */
export type Port = 'ingress' | 'admin';

/** One answer: a JSON body of a named schema (or one of several), plain text, or no body. */
export interface Answer {
  readonly description: string;
  readonly schema?: SchemaName | readonly SchemaName[];
  /** A body that is not JSON (`/metrics`). */
  readonly text?: string;
}

/** One route of one port. */
export interface Route {
  readonly port: Port;
  readonly method: 'get' | 'post' | 'patch' | 'delete';
  /** OpenAPI path, `{param}` for path parameters. */
  readonly path: string;
  readonly summary: string;
  /** Open without a token (probes, the documents); everything else needs the port's bearer token when one is set. */
  readonly open?: boolean;
  readonly query?: Readonly<Record<string, { readonly schema: TSchema; readonly description: string }>>;
  readonly body?: SchemaName;
  readonly answers: Readonly<Record<string, Answer>>;
}

const err = (description: string): Answer => ({ description, schema: 'Error' });
const limit = (max: number, dflt: number): Route['query'] => ({ limit: { schema: Type.Integer({ minimum: 1, maximum: max, default: dflt }), description: 'how many at most' } });
/** One query parameter per property of the object schema the daemon checks a query with, its description on the parameter. */
const queryOf = (s: JsonSchema): Route['query'] =>
  Object.fromEntries(Object.entries(s.properties as Record<string, JsonSchema>).map(([name, { description, ...schema }]) => [name, { schema: Type.Unsafe(schema), description: String(description) }]));

/** Answers common to every route of a port. */
const probes = (port: Port): Route[] => [
  { port, method: 'get', path: '/healthz', open: true, summary: 'the process is up', answers: { 200: { description: 'up', schema: 'Health' } } },
  {
    port,
    method: 'get',
    path: '/readyz',
    open: true,
    summary: port === 'ingress' ? 'this ingress can accept (broker link up, not draining), for load balancers' : 'broker reachable and every tier running',
    answers: { 200: { description: 'ready', schema: 'Readiness' }, 503: { description: 'not ready, with the reasons', schema: 'Readiness' } },
  },
  { port, method: 'get', path: '/openapi.json', open: true, summary: 'this document', answers: { 200: { description: 'the OpenAPI 3.1 document of this port', schema: 'OpenApiDocument' } } },
];

/**
 * The history API (DESIGN §11), mounted under `/v1` on the ingress (producer
 * tokens) and under `/admin` on the admin port: the same four calls.
 */
const history = (port: Port, base: '/v1' | '/admin'): Route[] => {
  const off = err('no database (HISTORY_DISABLED)');
  const away = err('the history database cannot be reached (HISTORY_UNAVAILABLE); retry');
  return [
    {
      port,
      method: 'get',
      path: `${base}/notifications`,
      summary: 'list notifications from the history, newest first (keyset pages)',
      query: queryOf(ListQuerySchema),
      answers: { 200: { description: 'a page', schema: 'HistoryPage' }, 400: err('a bad parameter (VALIDATION with field)'), 501: off, 503: away },
    },
    {
      port,
      method: 'get',
      path: `${base}/notifications/{id}`,
      summary: 'one notification: its ladders and every attempt',
      answers: { 200: { description: 'the timeline', schema: 'HistoryTimeline' }, 404: err('not in the history (NOT_FOUND)'), 501: off, 503: away },
    },
    {
      port,
      method: 'post',
      path: `${base}/notifications/{id}/resend`,
      summary: 'send a notification again, on a new ladder from tier 0',
      query: { force: { schema: Type.Boolean(), description: 'resend one still pending too' } },
      answers: {
        202: { description: 'a new ladder started', schema: 'ResendAnswer' },
        404: err('not in the history'),
        400: err('what the ingress would refuse for it now (UNKNOWN_MERCHANT, VALIDATION with field url or contentType), or a force that is not 1/true/yes/0/false/no'),
        409: err('still pending (NOTIFICATION_PENDING; force resends it), not resendable (NOT_RESENDABLE), or its merchant disabled (MERCHANT_DISABLED)'),
        501: off,
        503: err('the history database or the broker cannot take it now (HISTORY_UNAVAILABLE, BROKER_UNAVAILABLE, BROKER_BLOCKED, DRAINING, REGISTRY_UNAVAILABLE); retry. BROKER_CONFIRM_TIMEOUT: no confirm came, the broker may have taken it, so it stays claimed (pending): look it up before a forced resend'),
      },
    },
    {
      port,
      method: 'post',
      path: `${base}/notifications:recover`,
      summary: "send again a merchant's dead notifications of a time window",
      body: 'RecoverInput',
      answers: {
        202: { description: 'what was resent', schema: 'RecoverAnswer' },
        400: err('a bad window (VALIDATION with field)'),
        501: off,
        503: { description: 'stopped part-way (HISTORY_UNAVAILABLE, BROKER_UNAVAILABLE, BROKER_BLOCKED, BROKER_CONFIRM_TIMEOUT, DRAINING): the error and what was resent so far', schema: 'RecoverStopped' },
      },
    },
  ];
};

/** Every route of both ports. */
export const ROUTES: readonly Route[] = [
  ...probes('ingress'),
  {
    port: 'ingress',
    method: 'post',
    path: '/v1/notifications',
    summary: 'publish one notification; 202 only after the broker confirmed it',
    body: 'Notification',
    answers: {
      202: { description: 'accepted (the broker confirmed it)', schema: 'Accepted' },
      400: err('invalid notification (VALIDATION with field, BAD_JSON, UNKNOWN_MERCHANT)'),
      401: err('missing or wrong producer token'),
      409: err('the merchant is disabled'),
      413: err('request body over ingress.maxBodyBytes'),
      415: err('not application/json'),
      503: err('nothing accepted: broker unavailable, blocked or nacked, overloaded, draining; retry with the same id. After BROKER_CONFIRM_TIMEOUT the broker may have taken it: the retry is then a duplicate with that id, never a loss'),
    },
  },
  {
    port: 'ingress',
    method: 'post',
    path: '/v1/notifications:batch',
    summary: 'publish up to ingress.maxBatch notifications, answered per item',
    body: 'NotificationBatch',
    answers: {
      202: { description: 'every item accepted', schema: 'BatchAnswer' },
      207: { description: 'a mix of results (including every item invalid)', schema: 'BatchAnswer' },
      400: err('the envelope is invalid (field notifications) or not JSON'),
      401: err('missing or wrong producer token'),
      413: err('request body over ingress.maxBodyBytes'),
      415: err('not application/json'),
      503: { description: 'nothing accepted: every item failed with 503, or refused before reading', schema: ['BatchAnswer', 'Error'] },
    },
  },
  ...history('ingress', '/v1'),
  ...probes('admin'),
  { port: 'admin', method: 'get', path: '/metrics', summary: 'Prometheus metrics of every process', answers: { 200: { description: 'Prometheus text exposition', text: 'text/plain; version=0.0.4' } } },
  { port: 'admin', method: 'get', path: '/admin/status', summary: 'tiers, ingress, recorder and broker', answers: { 200: { description: 'status', schema: 'DaemonStatus' } } },
  { port: 'admin', method: 'get', path: '/admin/origins', summary: 'the worst origins of each tier', query: limit(9999, 20), answers: { 200: { description: 'origins', schema: 'OriginsReport' }, 400: err('bad limit') } },
  { port: 'admin', method: 'get', path: '/admin/dead', summary: 'parked notifications, listed without consuming them', query: limit(1000, 50), answers: { 200: { description: 'listing', schema: 'DeadListing' }, 400: err('bad limit'), 503: err('the broker is away, blocks publishing, or did not confirm a copy in time (BROKER_UNAVAILABLE, BROKER_BLOCKED, BROKER_CONFIRM_TIMEOUT): the originals were given back; retry') } },
  ...(['pause', 'resume'] as const).map((a): Route => ({
    port: 'admin',
    method: 'post',
    path: `/admin/tiers/{index}/${a}`,
    summary: `${a} a tier`,
    answers: { 200: { description: 'the tier', schema: 'TierStatus' }, 404: err('no such tier (TIER_UNKNOWN)') },
  })),
  { port: 'admin', method: 'post', path: '/admin/reload', summary: 'reload the configuration file', answers: { 200: { description: 'what was applied', schema: 'ReloadAnswer' }, 400: err('invalid configuration; the old one is kept') } },
  {
    port: 'admin',
    method: 'post',
    path: '/admin/dead/redrive',
    summary: 'move parked notifications back to tier 0',
    query: { ...limit(9_999_999, 100), force: { schema: Type.Boolean(), description: 'also those parked for a reason that still holds' } },
    answers: {
      200: { description: 'counts', schema: 'RedriveAnswer' },
      400: err('bad limit, or a force that is not 1/true/yes/0/false/no'),
      503: err('the broker is away, blocks publishing, or did not confirm a move in time, or the history cannot be asked (BROKER_UNAVAILABLE, BROKER_BLOCKED, BROKER_CONFIRM_TIMEOUT, HISTORY_UNAVAILABLE): what was not moved stays parked; retry'),
    },
  },
  {
    port: 'admin',
    method: 'get',
    path: '/admin/merchants',
    summary: 'list merchants, by id',
    query: { ...limit(1000, 50), cursor: { schema: Type.String({ pattern: MERCHANT_ID_PATTERN }), description: 'nextCursor of the previous page (a merchant id)' } },
    answers: { 200: { description: 'a page', schema: 'MerchantPage' }, 400: err('bad limit, or a cursor that is not a merchant id'), 501: err('no database (MERCHANTS_DISABLED)'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') },
  },
  {
    port: 'admin',
    method: 'post',
    path: '/admin/merchants',
    summary: 'register a merchant; its secret is in this answer only',
    body: 'MerchantInput',
    answers: { 201: { description: 'created', schema: 'MerchantWithSecret' }, 400: err('invalid (VALIDATION with field)'), 409: err('exists (MERCHANT_EXISTS)'), 501: err('no database'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') },
  },
  { port: 'admin', method: 'get', path: '/admin/merchants/{id}', summary: 'one merchant', answers: { 200: { description: 'the merchant', schema: 'MerchantAnswer' }, 400: err('an id that is not valid URL encoding'), 404: err('no such merchant'), 501: err('no database'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') } },
  {
    port: 'admin',
    method: 'patch',
    path: '/admin/merchants/{id}',
    summary: 'change a merchant (null clears a limit)',
    body: 'MerchantInput',
    answers: { 200: { description: 'changed', schema: 'MerchantWithSecret' }, 400: err('invalid'), 404: err('no such merchant'), 501: err('no database'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') },
  },
  { port: 'admin', method: 'delete', path: '/admin/merchants/{id}', summary: 'delete a merchant', answers: { 204: { description: 'deleted' }, 400: err('an id that is not valid URL encoding'), 404: err('no such merchant'), 501: err('no database'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') } },
  {
    port: 'admin',
    method: 'post',
    path: '/admin/merchants/{id}/rotate-secret',
    summary: 'add a new secret; the old one signs too until the grace ends',
    body: 'RotateInput',
    answers: { 200: { description: 'the new secret, shown once', schema: 'MerchantWithSecret' }, 400: err('bad grace (a duration up to 30d), a body that is not a JSON object, or not a standard merchant'), 404: err('no such merchant'), 501: err('no database'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') },
  },
  ...(['enable', 'disable'] as const).map((a): Route => ({
    port: 'admin',
    method: 'post',
    path: `/admin/merchants/{id}/${a}`,
    summary: `${a} a merchant`,
    body: 'DisableInput',
    answers: { 200: { description: 'the merchant', schema: 'MerchantAnswer' }, 400: err('a body that is not a JSON object (BAD_JSON, VALIDATION)'), 404: err('no such merchant'), 501: err('no database'), 503: err('the database cannot be reached or answer in time (REGISTRY_UNAVAILABLE): retry; after a change, read the merchant first (it may have been applied)') },
  })),
  ...history('admin', '/admin'),
];
