import type { LimitsConfig } from '../core/config.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { ajv, errorMessage, errorPath, type Validator } from './ajv.js';
import { SuccessSchema, batchSchema, notificationSchema } from './notification-schema.js';

/**
 * The schema checks of a notification, compiled once per set of limits
 * (a reload with other limits compiles anew), and the translation of ajv's
 * first error into notifyd's stable `VALIDATION` error and `field`.
 */

type ShapeLimits = Pick<LimitsConfig, 'idMaxLength' | 'urlMaxLength' | 'maxHeaders'>;

const compiled = new Map<string, Validator>();

function compiledFor(key: string, make: () => Validator): Validator {
  let v = compiled.get(key);
  if (v === undefined) {
    v = make();
    compiled.set(key, v);
  }
  return v;
}

/** The validator used last, and for which limits (one process has one configuration at a time). */
let last: { limits: ShapeLimits | null; validate: Validator | null } = { limits: null, validate: null };
const successValidator = ajv.compile(SuccessSchema);

/** `a.b` of a path: header names are cut to 64 characters, list indexes dropped (the field is the list). */
function fieldOf(path: readonly string[]): string {
  if (path.length === 0) return 'notification';
  if (path[0] === 'headers' && path.length > 1) return `headers.${path[1]!.slice(0, 64)}`;
  if (path[0] === 'success' && path.length > 1) return `success.${path[1]}`;
  return path[0]!;
}

function fail(field: string, message: string): never {
  throw new NotifyError(ErrorCodes.VALIDATION, `${field}: ${message}`, field);
}

/**
 * Checks a notification against its schema; throws `VALIDATION` naming the
 * first offending field. The value is not changed (no defaults filled in).
 */
export function checkNotificationShape(input: unknown, limits: ShapeLimits): void {
  // By the (frozen) limits object first: building a key string or a map lookup per call shows in the ingress's profile.
  if (limits !== last.limits) {
    last = { limits, validate: compiledFor(`${limits.idMaxLength}/${limits.urlMaxLength}/${limits.maxHeaders}`, () => ajv.compile(notificationSchema(limits))) };
  }
  const validate = last.validate!;
  if (validate(input)) return;
  const e = validate.errors![0]!;
  fail(fieldOf(errorPath(e)), errorMessage(e));
}

/** Checks success criteria (of a notification, of a merchant); throws `VALIDATION` naming `field` or one of its keys. */
export function checkSuccessShape(v: unknown, field: string): void {
  if (successValidator(v)) return;
  const e = successValidator.errors![0]!;
  const path = errorPath(e);
  fail(path.length === 0 ? field : `${field}.${path[0]}`, errorMessage(e));
}

/** Checks the envelope of a batch request; throws `VALIDATION` on `notifications`. */
export function checkBatchShape(parsed: unknown, maxBatch: number): void {
  const validate = compiledFor(`batch/${maxBatch}`, () => ajv.compile(batchSchema(maxBatch)));
  if (validate(parsed)) return;
  const e = validate.errors![0]!;
  if (e.keyword === 'minItems' || e.keyword === 'maxItems') fail('notifications', `must hold 1 to ${maxBatch} items`);
  fail('notifications', 'must be an array');
}
