/**
 * Merchants (DESIGN §10): what a merchant is, as the admin API takes it and
 * as every process keeps it. Pure: validation and shapes only.
 */
import type { SuccessCriteria } from '../core/config.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { validateSuccess } from '../core/message.js';
import { ajv, errorPath } from '../contract/ajv.js';
import { MerchantInputSchema } from '../contract/merchant-input.js';
import { MERCHANT_ID_PATTERN } from '../contract/notification-schema.js';

export type MerchantScheme = 'standard' | 'rsa2' | 'none';

/** What an operator sets (create or patch). */
export interface MerchantSettings {
  readonly name: string;
  readonly signing: MerchantScheme;
  /** Origins (`scheme://host[:port]`) its notifications may go to. */
  readonly allowedOrigins: readonly string[];
  /** Attempts in flight for this merchant per tier worker, on top of origin isolation; null: none. */
  readonly maxConcurrency: number | null;
  /** Attempts at most (≤ the daemon's tiers); null: the whole schedule. */
  readonly maxAttempts: number | null;
  /** Default success criteria of its notifications; null: the daemon's. */
  readonly success: SuccessCriteria | null;
}

/** One secret as shown after creation: never the secret itself. */
export interface SecretInfo {
  readonly fingerprint: string;
  readonly createdAt: string;
  readonly expiresAt: string | null;
}

/** A merchant as the admin API answers (no secret value, ever). */
export interface MerchantView extends MerchantSettings {
  readonly id: string;
  readonly enabled: boolean;
  readonly disabledReason: string | null;
  readonly failingSince: string | null;
  readonly secrets: readonly SecretInfo[];
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** A merchant as every process keeps it in memory to route and sign. */
export interface MerchantEntry {
  readonly id: string;
  readonly enabled: boolean;
  readonly signing: MerchantScheme;
  readonly allowedOrigins: ReadonlySet<string>;
  readonly maxConcurrency: number | null;
  readonly maxAttempts: number | null;
  readonly success: SuccessCriteria | null;
  /** Whether the registry holds it as failing (its `failing_since` is set). */
  readonly failing: boolean;
  /** `whsec_…` secrets that sign now, newest first (decrypted). */
  readonly secrets: readonly string[];
  /**
   * When each of `secrets` stops signing (ms epoch; null for the current
   * one), in the same order; absent: none ends. Checked at signing time, so
   * a secret whose grace ended stops signing then, not at the copy's next
   * refresh (which a database away for hours would put off).
   */
  readonly secretEnds?: readonly (number | null)[];
  /**
   * Secrets the registry holds for it that this process could not open
   * (sealed with another NOTIFY_SECRETS_KEY): with none that opens, its
   * notifications wait for the key to be put right rather than be parked.
   */
  readonly unopened?: number;
  /** Changes whenever anything that signs changes (the signer cache key). */
  readonly version: string;
}

const ID_RE = new RegExp(MERCHANT_ID_PATTERN);
/** Types, ranges and unknown keys: the admin API's documented schema (docs/openapi-admin.json), compiled once. */
const checkInput = ajv.compile(MerchantInputSchema);

function bad(field: string, message: string): never {
  throw new NotifyError(ErrorCodes.VALIDATION, `${field}: ${message}`, field);
}

/** True for a merchant id (the same alphabet as notification ids). */
export function isMerchantId(v: unknown): v is string {
  return typeof v === 'string' && ID_RE.test(v);
}

/**
 * `https://shop.example` (or a URL of it) as an origin, `scheme://host[:port]`
 * lower-cased with the default port left out, as `new URL().origin` gives it.
 */
export function normalizeOrigin(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 300) bad(field, 'must be an origin such as https://shop.example');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    bad(field, `"${v}" is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(field, 'must be http or https');
  if (u.username || u.password) bad(field, 'must not carry credentials');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) bad(field, 'an origin has no path, query or fragment');
  return u.origin;
}

interface Input {
  readonly name?: string;
  readonly signing?: MerchantScheme;
  readonly allowedOrigins?: readonly string[];
  readonly maxConcurrency?: number | null;
  readonly maxAttempts?: number | null;
  readonly success?: unknown;
}

/**
 * Validates admin input into settings: all of them for a create, the given
 * ones over `current` for a patch. `tiers` bounds `maxAttempts`. The schema
 * checks types and ranges; what it cannot say (required on create only, an
 * origin's normal form, the daemon's tier count) is checked here.
 */
export function validateMerchantSettings(input: unknown, tiers: number, current: MerchantSettings | null): MerchantSettings {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) bad('merchant', 'must be a JSON object');
  if (!checkInput(input)) {
    const e = checkInput.errors![0]!;
    const [top, index] = errorPath(e);
    bad(top === undefined ? 'merchant' : index === undefined ? top : `${top}[${index}]`, e.keyword === 'additionalProperties' ? 'unknown field' : (e.message ?? 'is invalid'));
  }
  const o = input as Input;
  const name = o.name !== undefined ? o.name.trim() : current?.name;
  if (!name) bad('name', 'is required: 1 to 200 characters');
  // PostgreSQL refuses a NUL in text and in jsonb (a 500 before).
  if (name.includes('\u0000')) bad('name', 'may not hold a NUL character');
  if (o.success != null && JSON.stringify(o.success).includes('\\u0000')) bad('success', 'may not hold a NUL character');
  if (o.allowedOrigins === undefined && current === null) bad('allowedOrigins', 'is required: a list of 1 to 100 origins such as https://shop.example');
  const allowedOrigins = o.allowedOrigins === undefined ? current!.allowedOrigins : [...new Set(o.allowedOrigins.map((x, i) => normalizeOrigin(x, `allowedOrigins[${i}]`)))];
  if (typeof o.maxAttempts === 'number' && o.maxAttempts > tiers) bad('maxAttempts', `must be an integer from 1 to ${tiers}, or null`);
  // null clears a limit; absent keeps it.
  return {
    name,
    signing: o.signing ?? current?.signing ?? 'standard',
    allowedOrigins,
    maxConcurrency: o.maxConcurrency !== undefined ? o.maxConcurrency : (current?.maxConcurrency ?? null),
    maxAttempts: o.maxAttempts !== undefined ? o.maxAttempts : (current?.maxAttempts ?? null),
    success: o.success === undefined ? (current?.success ?? null) : o.success === null ? null : validateSuccess(o.success),
  };
}
