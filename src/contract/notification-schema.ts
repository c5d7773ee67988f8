import type { LimitsConfig } from '../core/config.js';

/**
 * JSON Schemas of a notification as producers send it (DESIGN §4–5), one
 * definition for the validator (compiled by ajv) and the OpenAPI documents.
 * Plain objects, not TypeBox builders: every worker validates with them,
 * and importing TypeBox cost each process about 14 MB (the documents, built
 * by `npm run build`, wrap them with `Type.Unsafe`). The limits come from the configuration, so the
 * schemas are functions of it. What JSON Schema cannot say (a URL's
 * normal form, header names reserved in any case, sizes in bytes, a time
 * relative to now) stays in `core/message.ts`, after the schema passed.
 */

/** Ids and merchant ids: letters, digits and `. _ : @ -`, starting with a letter or digit. */
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:@-]*$';
/** An HTTP header name (RFC 9110 token). */
export const TOKEN_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/**
 * What an HTTP header value may hold: tab, visible ASCII, space and the
 * Latin-1 range. undici refuses anything else (a character above U+00FF,
 * say) when the request is made, so it is refused on input instead.
 */
export const HEADER_VALUE_PATTERN = '^[\\t\\u0020-\\u007e\\u0080-\\u00ff]*$';
/** No whitespace nor control characters anywhere in a URL (a CR LF in one would split a request). */
export const URL_PATTERN = '^[^\\s\\u0000-\\u001f\\u007f]*$';
/** POST or PUT, in any case. */
const METHOD_PATTERN = '^([Pp][Oo][Ss][Tt]|[Pp][Uu][Tt])$';
/** The largest Date (year 275760): anything above cannot be an epoch and breaks AMQP's timestamp encoding. */
export const MAX_EPOCH_MS = 8.64e15;
/** Largest serialised `metadata`, bytes. */
export const METADATA_MAX_BYTES = 16 * 1024;
/** Longest merchant id. */
export const MERCHANT_ID_MAX = 128;
/** A merchant id: the notification ids' alphabet, up to `MERCHANT_ID_MAX` characters (the database holds the same rule). */
export const MERCHANT_ID_PATTERN = `^[A-Za-z0-9][A-Za-z0-9._:@-]{0,${MERCHANT_ID_MAX - 1}}$`;

/** A JSON Schema object, as ajv and OpenAPI 3.1 take it. */
export type JsonSchema = Readonly<Record<string, unknown>>;

/**
 * Nullable and two-typed values are written as JSON Schema type lists
 * (`type: ['string', 'null']`), not `anyOf`: keywords of one type apply only
 * to values of that type, and ajv then checks them in one pass, without
 * building and discarding an error for the branch that did not match (on
 * the hot path of the ingress). OpenAPI 3.1 takes type lists as they are.
 */
const successFields = {
  status: {
    type: ['string', 'array'],
    pattern: '^2xx$',
    items: { type: 'integer', minimum: 100, maximum: 599 },
    minItems: 1,
    maxItems: 50,
    description: '"2xx" (the default) or a list of HTTP statuses',
    'x-error': 'must be "2xx" or a list of HTTP statuses',
  },
  bodyEquals: { type: 'string', maxLength: 1024, description: 'the response body, trimmed, must equal this (Alipay: `success`)', 'x-error': 'must be a string of at most 1024 characters' },
};

/** Success criteria: a status list and/or an exact body (DESIGN §6). */
export const SuccessSchema: JsonSchema = { type: 'object', properties: successFields, additionalProperties: false, 'x-error': 'must be an object' };

/** A JSON object of any content, or null (same as absent). */
const objectOrNull = (description: string): JsonSchema => ({ type: ['object', 'null'], description, 'x-error': 'must be an object' });

/** The notification a producer sends, for the given limits. */
export function notificationSchema(limits: Pick<LimitsConfig, 'idMaxLength' | 'urlMaxLength' | 'maxHeaders'>): JsonSchema {
  return {
    type: 'object',
    required: ['url', 'body'],
    properties: {
      id: {
        type: ['string', 'null'],
        minLength: 1,
        maxLength: limits.idMaxLength,
        pattern: ID_PATTERN,
        description: 'stable id the merchant deduplicates on; generated (UUID v7) when absent or null',
        'x-error': {
          maxLength: `is longer than ${limits.idMaxLength} characters`,
          pattern: 'may hold only letters, digits and . _ : @ - (starting with a letter or digit)',
          default: 'must be a non-empty string',
        },
      },
      merchant: {
        type: ['string', 'null'],
        maxLength: MERCHANT_ID_MAX,
        pattern: ID_PATTERN,
        description: 'a registered merchant (needs a database)',
        'x-error': `must be a merchant id: letters, digits and . _ : @ - (up to ${MERCHANT_ID_MAX}, starting with a letter or digit)`,
      },
      // No whitespace or control characters either (URL_PATTERN): checked with the WHATWG parse that normalises it,
      // only for a URL not seen before, rather than per notification here.
      url: {
        type: 'string',
        minLength: 1,
        maxLength: limits.urlMaxLength,
        format: 'uri',
        description: 'absolute http(s) URL without credentials, whitespace or control characters',
        'x-error': { maxLength: `is longer than ${limits.urlMaxLength} characters`, default: 'must be a non-empty string' },
      },
      method: { type: 'string', pattern: METHOD_PATTERN, default: 'POST', description: 'POST or PUT (any case)', 'x-error': 'must be POST or PUT' },
      // patternProperties rather than propertyNames plus additionalProperties: one pass over the headers, not two.
      headers: {
        type: 'object',
        properties: {},
        patternProperties: {
          [TOKEN_PATTERN]: {
            type: 'string',
            pattern: HEADER_VALUE_PATTERN,
            'x-error': { type: 'value must be a string', default: 'value may hold only tab, visible ASCII and Latin-1 characters, no CR, LF or control characters (encode others, e.g. percent-encoding)' },
          },
        },
        additionalProperties: false,
        maxProperties: limits.maxHeaders,
        description: 'extra request headers; names are case-insensitive, and those notifyd sets (content-type, user-agent, webhook-*, host, proxy-*, …) are refused',
        'x-error': { maxProperties: `more than ${limits.maxHeaders} headers`, additionalProperties: 'is not a valid header name', default: 'must be an object of name: value strings' },
      },
      body: {
        type: ['string', 'object'],
        description: 'a string is sent as is; an object is sent as JSON, or form-encoded (scalar fields only) under application/x-www-form-urlencoded',
        'x-error': 'must be a string or an object',
      },
      contentType: { type: 'string', maxLength: 200, format: 'media-type', default: 'application/json', 'x-error': 'must be a media type such as application/json' },
      success: { type: ['object', 'null'], properties: successFields, additionalProperties: false, 'x-error': 'must be an object' },
      metadata: objectOrNull('copied into outcome events (at most 16 KiB as JSON)'),
      createdAt: { type: 'number', minimum: 0, maximum: MAX_EPOCH_MS, description: 'ms epoch; at most a day ahead; defaults to the time it is received', 'x-error': 'must be a ms epoch number' },
    },
    additionalProperties: false,
    'x-error': { required: 'is required', type: 'must be a JSON object' },
  };
}

/** The envelope of `POST /v1/notifications:batch`; each item is checked on its own (answers are per item). */
export function batchSchema(maxBatch: number, item: JsonSchema = {}): JsonSchema {
  return { type: 'object', required: ['notifications'], properties: { notifications: { type: 'array', items: item, minItems: 1, maxItems: maxBatch } } };
}
