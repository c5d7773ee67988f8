import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

/**
 * The media-type grammar of RFC 9110 (type/subtype and parameters). A quoted
 * value holds only what a header value may (qdtext and quoted pairs: tab,
 * visible ASCII, obs-text): it is sent as the request's Content-Type, and a
 * control character or one past U+00FF, accepted here, made undici refuse
 * the request at tier 0 (parked `invalid` after a 202) instead of a 400.
 * Around a `;` only spaces and tabs (the RFC's OWS), for the same reason.
 */
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*([ \t]*;[ \t]*[A-Za-z0-9!#$&^_.+-]+=("(?:[\t !#-[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"|[A-Za-z0-9!#$&^_.+-]+))*$/;
/** Content types seen before, known valid: the grammar is a costly regex to run per attempt. */
const validMediaTypes = new Set<string>(['application/json', 'application/x-www-form-urlencoded']);

function isMediaType(s: string): boolean {
  if (validMediaTypes.has(s)) return true;
  if (!MEDIA_TYPE_RE.test(s)) return false;
  if (validMediaTypes.size < 256) validMediaTypes.add(s);
  return true;
}

/** ajv's warnings, but the one that `unicode: false` (chosen, see below) is deprecated. */
function quietDeprecation(...args: unknown[]): void {
  if (typeof args[0] === 'string' && args[0].includes('option unicode')) return;
  console.warn(...args);
}

/**
 * The one ajv instance: schemas compiled once into plain functions (what
 * fastify does), strict so that a typo in a schema fails at compile time.
 * `uri` is an annotation only: URLs are parsed by the WHATWG parser, which
 * also normalises them, after the schema passed. `media-type` is checked
 * here, memoised, since nearly every notification carries the same two.
 */
export const ajv = new Ajv({
  strict: true,
  allErrors: false,
  // Errors carry the failing keyword's schema, where `x-error` says what to tell the producer (see errorMessage).
  verbose: true,
  formats: { uri: true, 'media-type': isMediaType },
  // Inherited properties are not checked for being own ones (ownProperties), as notifyd never did: a
  // `__proto__` key in parsed JSON is an own key, so an unknown field all the same, and the check costs on the hot path.
  ownProperties: false,
  // `type: ['string', 'null']` and the like: see contract/notification-schema.ts.
  allowUnionTypes: true,
  // String lengths as String#length counts them (UTF-16 units), as notifyd always has, not code points:
  // every length-limited field is ASCII by its pattern (ids, media types) or rechecked by the URL parser,
  // so the count is the same, and ajv's code-point loop over every id and URL is not paid per notification.
  // The option is deprecated in ajv 8 (pinned here), hence the quieter logger below.
  unicode: false,
  logger: { log: console.log, warn: quietDeprecation, error: console.error },
});

/**
 * `x-error` on a schema: what a producer is told when a value fails it,
 * a string, or one per keyword (`{maxLength: '…', default: '…'}`). An
 * annotation (OpenAPI keeps `x-` keywords); the wording lives beside the
 * rule it explains instead of in a table keyed by field.
 */
ajv.addKeyword({ keyword: 'x-error', schemaType: ['string', 'object'] });

/** The `x-error` message for an error of a validator compiled with `verbose`, else ajv's own. */
export function errorMessage(e: ErrorObject): string {
  const own = (e.parentSchema as { 'x-error'?: string | Record<string, string> } | undefined)?.['x-error'];
  if (e.keyword === 'additionalProperties' && (typeof own !== 'object' || own.additionalProperties === undefined)) return 'unknown field';
  if (typeof own === 'string') return own;
  return own?.[e.keyword] ?? own?.default ?? e.message ?? 'is invalid';
}

/** A compiled validator; `T` is what a value that passes is. */
export type Validator<T = unknown> = ValidateFunction<T>;
/** One error of a validator (`validator.errors`). */
export type { ErrorObject };

/**
 * The field an ajv error is about, in notifyd's `a.b` notation: the
 * missing or unknown key, the offending property name, or the data path.
 */
export function errorPath(e: ErrorObject): string[] {
  const path = e.instancePath === '' ? [] : e.instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (e.keyword === 'required') path.push(String(e.params.missingProperty));
  else if (e.keyword === 'additionalProperties') path.push(String(e.params.additionalProperty));
  else if (e.propertyName !== undefined) path.push(e.propertyName);
  return path;
}

/**
 * For reports that list every problem (`notifyd config check`): same
 * options, but ajv goes on past the first error. Never on a hot path.
 */
export function ajvAllErrors(): Ajv {
  if (allErrors === null) {
    allErrors = new Ajv({ strict: true, allErrors: true, verbose: true, allowUnionTypes: true, formats: { uri: true, 'media-type': isMediaType } });
    allErrors.addKeyword({ keyword: 'x-error', schemaType: ['string', 'object'] });
  }
  return allErrors;
}
/** Made on first use (the CLI's check), not in every process that imports this module. */
let allErrors: Ajv | null = null;
