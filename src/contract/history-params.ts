/**
 * The history API's inputs (DESIGN §11) as JSON Schema, one definition for
 * the check (history/query-params.ts, which also checks what a schema cannot
 * say) and the OpenAPI documents (contract/routes.ts, one query parameter per
 * property). Plain objects, as notification-schema.ts explains.
 */
import { ID_PATTERN, type JsonSchema } from './notification-schema.js';

/** A listing page holds this many by default, and at most `LIST_LIMIT_MAX`. */
export const LIST_LIMIT_DEFAULT = 50;
export const LIST_LIMIT_MAX = 500;

/** Times the history accepts: from the epoch to the end of year 9999 (PostgreSQL and `Date` both hold them; year 0 is not a PostgreSQL year). */
export const TIME_MIN = 0;
export const TIME_MAX = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
/** What a time out of that range is told. */
export const TIME_RANGE_ERROR = 'must be a time between 1970-01-01 and 9999-12-31';

// The merchant ids' alphabet: nothing else can match, and a NUL would reach PostgreSQL (which refuses it in text: a 500).
const merchant = {
  type: 'string',
  minLength: 1,
  maxLength: 200,
  pattern: ID_PATTERN,
  'x-error': { type: 'must be a string', pattern: 'must be a merchant id: letters, digits and . _ : @ - (starting with a letter or digit)', default: 'must be 1 to 200 characters' },
};

/** A recover's bound: a JSON number is ms since the epoch, never a duration (a duration is a string with its unit). */
const bodyTime = (description: string): JsonSchema => ({
  type: ['number', 'string'],
  minimum: TIME_MIN,
  maximum: TIME_MAX,
  description,
  'x-error': { type: 'must be a ms epoch number, an ISO 8601 time or a duration back from now', default: TIME_RANGE_ERROR },
});

/** `GET …/notifications?merchant=&status=&since=&until=&limit=&cursor=`, `limit` as a number once it is digits. */
export const ListQuerySchema: JsonSchema = {
  type: 'object',
  properties: {
    merchant: { ...merchant, description: 'only this merchant' },
    status: { type: 'string', enum: ['pending', 'delivered', 'dead'], description: 'only this status', 'x-error': 'must be one of pending, delivered, dead' },
    since: { type: 'string', description: 'ISO 8601 time or a duration back from now (2d), inclusive' },
    until: { type: 'string', description: 'ISO 8601 time or a duration back from now, exclusive' },
    limit: { type: 'integer', minimum: 1, maximum: LIST_LIMIT_MAX, default: LIST_LIMIT_DEFAULT, description: 'how many at most', 'x-error': `must be an integer from 1 to ${LIST_LIMIT_MAX}` },
    cursor: { type: 'string', description: 'nextCursor of the previous page' },
  },
  additionalProperties: false,
  'x-error': { additionalProperties: 'unknown parameter' },
};

/** `POST …/notifications:recover`: a merchant's dead notifications of a window. */
export const RecoverInputSchema: JsonSchema = {
  type: 'object',
  required: ['merchant', 'since'],
  properties: {
    merchant,
    since: bodyTime('ms epoch number, ISO 8601 time, or a duration back from now (2d); inclusive'),
    until: bodyTime('ms epoch number, ISO 8601 time, or a duration back from now; exclusive, default now'),
  },
  additionalProperties: false,
  'x-error': { type: 'must be a JSON object {merchant, since, until}', required: 'required' },
};
