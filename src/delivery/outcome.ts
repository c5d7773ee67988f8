import type { SuccessCriteria } from '../core/config.js';
import type { DeadReason } from '../core/message.js';

/** Why an attempt was made without a request (origin isolation, DESIGN §6). */
export type SkipReason = 'origin-failing' | 'origin-saturated';

/** What one attempt produced, before any decision. */
export type AttemptResult =
  | { readonly kind: 'response'; readonly status: number; readonly body: string }
  /** No usable response: refused connection, timeout, reset, TLS error... */
  | { readonly kind: 'error'; readonly code: string; readonly message: string }
  /** No request was made: the origin is failing, or stayed saturated for the whole wait budget. */
  | { readonly kind: 'skipped'; readonly reason: SkipReason; readonly message: string };

/** What happens to the notification next. */
export type Outcome =
  | { readonly kind: 'delivered' }
  | { readonly kind: 'retry'; readonly error: string }
  | { readonly kind: 'dead'; readonly reason: DeadReason; readonly error: string };

/**
 * Error codes that can never succeed on a later attempt, with the reason they
 * park under. undici's argument errors say the request itself is malformed
 * (a header value it refuses, say): the same request fails the same way.
 */
const PERMANENT_ERROR_CODES: ReadonlyMap<string, DeadReason> = new Map([
  ['DESTINATION_BLOCKED', 'blocked'],
  ['INVALID_URL', 'invalid'],
  ['UND_ERR_INVALID_ARG', 'invalid'],
  ['UND_ERR_NOT_SUPPORTED', 'invalid'],
]);

/** Pure: does this response meet the success criteria? */
export function isSuccess(status: number, body: string, criteria: SuccessCriteria): boolean {
  const statusOk = criteria.status === '2xx' ? status >= 200 && status < 300 : criteria.status.includes(status);
  if (!statusOk) return false;
  return criteria.bodyEquals === undefined || body.trim() === criteria.bodyEquals;
}

/** Short, single-line text for the `notify-last-error` header. */
export function describeFailure(result: AttemptResult, maxLength = 200): string {
  // Error messages (undici, TLS, DNS) may span lines as much as bodies do.
  const oneLine = (s: string): string => s.replace(/\s+/g, ' ').trim();
  const body = result.kind === 'response' ? oneLine(result.body) : '';
  const text =
    result.kind === 'response'
      ? `status ${result.status}${body ? `: ${body}` : ''}`
      : result.kind === 'error'
        ? oneLine(`${result.code}: ${result.message}`)
        : oneLine(`skipped (${result.reason}): ${result.message}`);
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

/**
 * Pure: decides what an attempt means. Success per the criteria; a status in
 * `deadOnStatus` or a permanent error parks at once; otherwise retry while
 * tiers remain, else park as `exhausted`.
 */
export function classifyAttempt(
  result: AttemptResult,
  criteria: SuccessCriteria,
  deadOnStatus: readonly number[],
  isLastTier: boolean,
): Outcome {
  if (result.kind === 'response' && isSuccess(result.status, result.body, criteria)) return { kind: 'delivered' };
  const error = describeFailure(result);
  if (result.kind === 'response' && deadOnStatus.includes(result.status)) {
    return { kind: 'dead', reason: `status-${result.status}`, error };
  }
  const permanent = result.kind === 'error' ? PERMANENT_ERROR_CODES.get(result.code) : undefined;
  if (permanent !== undefined) return { kind: 'dead', reason: permanent, error };
  if (!isLastTier) return { kind: 'retry', error };
  // A name that resolved only to refused addresses may be a passing DNS
  // mistake, so it went down the ladder; at its end it parks as what it is.
  return { kind: 'dead', reason: result.kind === 'error' && result.code === 'DNS_BLOCKED' ? 'blocked' : 'exhausted', error };
}
