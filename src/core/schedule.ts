import { ErrorCodes, NotifyError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration as text: the configuration's JSON Schema carries the same pattern. */
export const DURATION_RE = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/;

/**
 * Parses `500ms`, `15s`, `3m`, `1h`, `1d` (or a bare number of milliseconds) into ms.
 * Fractions are allowed (`1.5s`); negatives and empty strings are not.
 */
export function parseDuration(input: string | number, field = 'duration'): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return Math.round(input);
    throw new NotifyError(ErrorCodes.DURATION_INVALID, `${field}: ${input} is not a non-negative duration`, field);
  }
  const m = DURATION_RE.exec(input);
  if (!m) {
    throw new NotifyError(
      ErrorCodes.DURATION_INVALID,
      `${field}: "${input}" is not a duration (use e.g. 500ms, 15s, 3m, 1h)`,
      field,
    );
  }
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 'ms']!);
}

/** Formats ms back into the shortest exact unit form (`900000` → `15m`). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const n = UNIT_MS[unit]!;
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** Named retry ladders (DESIGN §2). Entry i is the wait before attempt i. */
export const SCHEDULE_PRESETS: Readonly<Record<string, string>> = Object.freeze({
  default: '0s,1s,3s,5s,15s,30s',
  alipay: '0s,4m,10m,10m,1h,2h,6h,15h',
  wechatpay: '0s,15s,15s,30s,3m,10m,20m,30m,30m,30m,1h,3h,3h,3h,6h,6h',
  svix: '0s,5s,5m,30m,2h,5h,10h,10h',
});

/** Upper bound on tiers: each tier is a process, so a ladder of hundreds is a mistake. */
export const MAX_TIERS = 32;

/** The longest delay a wait queue can hold: RabbitMQ refuses an `x-message-ttl` over 2³² − 1 ms (about 49.7 days). */
export const MAX_DELAY_MS = 2 ** 32 - 1;

/**
 * Parses a preset name, a comma list (`0s,1s,3s`) or an array of durations into
 * a frozen list of delays in ms.
 */
export function parseSchedule(input: string | readonly (string | number)[], field = 'schedule'): readonly number[] {
  let parts: readonly (string | number)[];
  if (typeof input === 'string') {
    const preset = SCHEDULE_PRESETS[input.trim()];
    parts = (preset ?? input).split(',');
  } else if (Array.isArray(input)) {
    parts = input;
  } else {
    throw new NotifyError(ErrorCodes.SCHEDULE_INVALID, `${field}: must be a preset name or a list of durations`, field);
  }
  if (parts.length === 0 || (parts.length === 1 && String(parts[0]).trim() === '')) {
    throw new NotifyError(ErrorCodes.SCHEDULE_INVALID, `${field}: is empty`, field);
  }
  if (parts.length > MAX_TIERS) {
    throw new NotifyError(ErrorCodes.SCHEDULE_INVALID, `${field}: ${parts.length} tiers is over the limit of ${MAX_TIERS}`, field);
  }
  const delays = parts.map((p, i) => {
    try {
      return parseDuration(typeof p === 'string' ? p.trim() : p, `${field}[${i}]`);
    } catch (err) {
      const known = Object.keys(SCHEDULE_PRESETS).join(', ');
      throw new NotifyError(
        ErrorCodes.SCHEDULE_INVALID,
        `${field}: "${String(p)}" is neither a duration nor a preset (${known})`,
        field,
        { cause: err },
      );
    }
  });
  const tooLong = delays.findIndex((d) => d > MAX_DELAY_MS);
  // Otherwise the broker refuses the wait queue's declaration, and the master retries it for ever with no tier up.
  if (tooLong >= 0) throw new NotifyError(ErrorCodes.SCHEDULE_INVALID, `${field}: "${String(parts[tooLong])}" is longer than a wait queue can hold (${MAX_DELAY_MS} ms, about 49 days)`, field);
  return Object.freeze(delays);
}

/**
 * Pure: how long a notification due for attempt `tier` may wait for its
 * origin before the attempt is made or skipped: the delay before the next
 * attempt (waiting longer would only push the rest of the ladder back), or,
 * on the last tier, that tier's own delay.
 */
export function waitBudgetMs(scheduleMs: readonly number[], tier: number): number {
  return scheduleMs[tier + 1] ?? scheduleMs[tier] ?? 0;
}

/** Shortest and longest stay in a tier's hold queue. */
const HOLD_MIN_MS = 250;
const HOLD_MAX_MS = 10_000;

/**
 * Pure: the TTL of tier `tier`'s hold queue, where notifications for a
 * saturated origin wait outside the tier's window: half the wait budget, so
 * a deferred notification gets a second look before its budget runs out,
 * within [250 ms, 10 s] (shorter loops cost the broker, longer ones add
 * lateness), and never longer than the budget itself. With no budget (the
 * next delay, or a last tier's own, is 0) 10 s: such a tier never defers a
 * notification that has a next rung (it is attempted or skipped at once),
 * but it may be the last rung (a schedule ending in 0s, or a merchant's
 * `maxAttempts` ending the ladder there), where a skip would park it
 * exhausted without a request to a merchant that only answers slowly: there
 * it waits here, 10 s a turn, while its origin is saturated.
 */
export function holdDelayMs(scheduleMs: readonly number[], tier: number): number {
  const budget = waitBudgetMs(scheduleMs, tier);
  if (budget <= 0) return HOLD_MAX_MS;
  return Math.min(budget, Math.max(HOLD_MIN_MS, Math.min(HOLD_MAX_MS, Math.round(budget / 2))));
}

/** When the attempt after a failed one is due, and what the wait queue needs to know for it. */
export interface RetryTiming {
  /** Epoch ms the next attempt is due (`notify-due-at`). */
  readonly dueAt: number;
  /**
   * Per-message expiration for the wait queue, ms, when shorter than the
   * queue's own TTL (the delay); null: the queue's TTL is the wait.
   */
  readonly expirationMs: number | null;
}

/**
 * Pure: when the retry of an attempt that began at `startedAt` and is handed
 * on at `now` is due. DESIGN counts a delay from the moment the attempt
 * failed, which is when its answer arrived; a worker on a busy machine reads
 * that answer late, and counting from the hand-on adds that lateness to
 * every rung (docs/performance.md, stop 20). So the delay is counted from the
 * attempt's start, but never from earlier than `allowanceMs` before the
 * hand-on: an attempt that took longer (a slow or hanging merchant) keeps
 * its ladder within `allowanceMs` of counting from its end. 0: from the
 * hand-on. The allowance never takes more than half the delay, so a merchant
 * whose attempts time out still gets a pause between them. A delay of 0 has
 * no wait queue, so no expiration.
 */
export function retryTiming(delayMs: number, startedAt: number, now: number, allowanceMs: number): RetryTiming {
  if (delayMs <= 0) return { dueAt: now, expirationMs: null };
  const allowance = Math.min(Math.max(0, allowanceMs), Math.floor(delayMs / 2));
  const from = Math.min(now, Math.max(startedAt, now - allowance));
  const dueAt = from + delayMs;
  const left = dueAt - now;
  // At least 1: an expiration of 0 means "unless a consumer takes it now", and a wait queue has none.
  return { dueAt, expirationMs: left < delayMs ? Math.max(1, Math.round(left)) : null };
}
