/**
 * The one table of error codes. Code paths decide on `code`, never on
 * `instanceof`: errors cross the IPC pipe and the HTTP API as plain data.
 */
export const ErrorCodes = {
  /** A configuration key is missing or invalid; the process exits 78. */
  CONFIG_INVALID: 'CONFIG_INVALID',
  /** A duration such as `15s` could not be parsed. */
  DURATION_INVALID: 'DURATION_INVALID',
  /** A schedule is empty, has a bad entry, or names an unknown preset. */
  SCHEDULE_INVALID: 'SCHEDULE_INVALID',
  /** The notification failed validation (field says which). */
  VALIDATION: 'VALIDATION',
  /** Request body is not JSON. */
  BAD_JSON: 'BAD_JSON',
  /** Request body over the ingress limit. */
  BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  /** Unknown route or method on an HTTP endpoint. */
  NOT_FOUND: 'NOT_FOUND',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** Missing or wrong bearer token. */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** A browser request the admin port refuses (from another site, or for a name that is not loopback). */
  FORBIDDEN: 'FORBIDDEN',
  /** The broker is not connected, or the channel closed before the confirm; nothing was accepted, unless said otherwise. */
  BROKER_UNAVAILABLE: 'BROKER_UNAVAILABLE',
  /** The broker nacked a publish. */
  BROKER_NACK: 'BROKER_NACK',
  /**
   * A publish got no confirm in time (its channel may have lost it, or the
   * broker may still take the message): a producer retries with the same id
   * (at worst a duplicate); a resend keeps its claim; a tier renews the
   * channel and publishes a hand-on again.
   */
  BROKER_CONFIRM_TIMEOUT: 'BROKER_CONFIRM_TIMEOUT',
  /** The broker blocks publishing (memory or disk alarm); nothing was accepted. */
  BROKER_BLOCKED: 'BROKER_BLOCKED',
  /** Too much is under way already (requests or publishes past their cap); nothing was accepted. */
  OVERLOADED: 'OVERLOADED',
  /** The daemon is draining and accepts nothing new. */
  DRAINING: 'DRAINING',
  /** The notification names a merchant the registry does not know. */
  UNKNOWN_MERCHANT: 'UNKNOWN_MERCHANT',
  /** The notification's merchant is disabled. */
  MERCHANT_DISABLED: 'MERCHANT_DISABLED',
  /** No merchant with that id (admin API). */
  MERCHANT_NOT_FOUND: 'MERCHANT_NOT_FOUND',
  /** A merchant with that id exists already (admin API). */
  MERCHANT_EXISTS: 'MERCHANT_EXISTS',
  /** Merchants need a database (NOTIFY_DATABASE_URL), and none is configured. */
  MERCHANTS_DISABLED: 'MERCHANTS_DISABLED',
  /** The merchant registry cannot be read right now; nothing was accepted. */
  REGISTRY_UNAVAILABLE: 'REGISTRY_UNAVAILABLE',
  /** The destination resolves to an address the SSRF guard refuses. */
  DESTINATION_BLOCKED: 'DESTINATION_BLOCKED',
  /** A message on a work queue could not be decoded; it is parked `invalid`. */
  MESSAGE_INVALID: 'MESSAGE_INVALID',
  /** Signing failed (bad key, pool closed, body not signable by the scheme). */
  SIGNING_FAILED: 'SIGNING_FAILED',
  /** A webhook signature did not verify (merchant-side helper). */
  SIGNATURE_INVALID: 'SIGNATURE_INVALID',
  /** A control message was not understood. */
  CONTROL_INVALID: 'CONTROL_INVALID',
  /** A tier index outside the schedule. */
  TIER_UNKNOWN: 'TIER_UNKNOWN',
  /** The change asked for needs a restart (e.g. a new schedule). */
  RESTART_REQUIRED: 'RESTART_REQUIRED',
  /** Delivery history needs a database (NOTIFY_DATABASE_URL), and none is configured. */
  HISTORY_DISABLED: 'HISTORY_DISABLED',
  /** A resend of a notification still under way (pending); `force` resends it anyway. */
  NOTIFICATION_PENDING: 'NOTIFICATION_PENDING',
  /** The history holds no notification that can be sent again (never seen whole, or no longer valid). */
  NOT_RESENDABLE: 'NOT_RESENDABLE',
  /** The history cannot be read right now (database away). */
  HISTORY_UNAVAILABLE: 'HISTORY_UNAVAILABLE',
  /** A call (ctl to the admin API) got no answer in time; what it asked for may or may not have happened. */
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  /** ctl could not connect to the admin API: nothing was sent. */
  ADMIN_UNREACHABLE: 'ADMIN_UNREACHABLE',
  /** ctl's connection to the admin API broke before the answer: what it asked for may or may not have happened. */
  ADMIN_CONNECTION_LOST: 'ADMIN_CONNECTION_LOST',
  /** Something unexpected; the message says what. */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Plain-data shape of an error, safe to send over IPC or HTTP. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
  field?: string;
}

/** An error with a stable `code` and, for input errors, the offending `field`. */
export class NotifyError extends Error {
  readonly code: ErrorCode;
  readonly field?: string;

  constructor(code: ErrorCode, message: string, field?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NotifyError';
    this.code = code;
    if (field !== undefined) this.field = field;
  }

  toJSON(): ErrorData {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field };
  }
}

/** True when `err` carries the given code (works for plain objects from IPC too). */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

/** Normalises anything thrown into plain error data. */
export function toErrorData(err: unknown): ErrorData {
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown; message?: unknown; field?: unknown };
    const known = typeof e.code === 'string' && (Object.values(ErrorCodes) as string[]).includes(e.code);
    const data: ErrorData = {
      code: known ? (e.code as ErrorCode) : ErrorCodes.INTERNAL,
      message: typeof e.message === 'string' ? e.message : String(err),
    };
    if (typeof e.field === 'string') data.field = e.field;
    return data;
  }
  return { code: ErrorCodes.INTERNAL, message: String(err) };
}
