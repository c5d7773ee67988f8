/**
 * How long a tier worker waits before it consumes again after the broker
 * cancelled its consumer (a `basic.cancel` from the broker: its queue was
 * deleted, or a classic queue's node went away). Left alone, the worker
 * would stay connected and "running" while consuming nothing. Consuming
 * again either works (the queue is back) or fails on a missing queue, which
 * closes the channel and hands over to the reconnect loop and its own
 * back-off. The delay doubles while cancels keep coming, so a broker that
 * cancels every new consumer is not asked again and again.
 */

/** First wait after a cancel. */
export const CANCEL_RETRY_FIRST_MS = 1000;
/** Longest wait. */
export const CANCEL_RETRY_MAX_MS = 30_000;
/** A cancel this long after the previous one starts from the first wait again. */
export const CANCEL_QUIET_MS = 60_000;

/**
 * Pure: the wait before consuming again, given the previous wait (0 before
 * the first cancel) and the time since the previous cancel.
 */
export function cancelRetryMs(previousMs: number, sinceLastCancelMs: number): number {
  if (previousMs <= 0 || sinceLastCancelMs >= CANCEL_QUIET_MS) return CANCEL_RETRY_FIRST_MS;
  return Math.min(CANCEL_RETRY_MAX_MS, previousMs * 2);
}
