import type { AckStall } from './ack-batcher.js';

/**
 * When a tier worker moves its consumer to a fresh channel (a new "lane")
 * because a few long-held deliveries keep its acks from going out together.
 *
 * Why: a `multiple` ack covers every delivery up to its tag, so one delivery
 * that stays unfinished at the head of a channel (an attempt to a merchant
 * that hangs until the timeout, a notification waiting for its origin) makes
 * every delivery behind it be acked by a frame of its own. On a quorum queue
 * each frame is a command the queue's one process appends to its log: with a
 * hanging merchant at 10 % of tier 0's traffic, 20,000 deliveries took about
 * 20,000 ack frames instead of about 2,800, and the broker spent 40–43 ms of
 * CPU per 1,000 healthy deliveries instead of 28–31 (docs/performance.md,
 * stop 25). A consumer on a new channel starts with a clear head; the old
 * channel keeps its unfinished deliveries (they are acked there, one by one,
 * as they finish) and is closed once it holds none.
 */
export interface LanePolicy {
  /** The head must have been unfinished at least this long ... */
  readonly stallMs: number;
  /**
   * ... and this many times the mean age of the deliveries acked one by one
   * behind it: when every delivery is about as slow (one slow merchant
   * taking all the traffic) every lane would stall alike, so nothing moves;
   * deliveries far slower than the rest (a hanging merchant among healthy
   * ones) move a lane.
   */
  readonly stallFactor: number;
  /** At least this many deliveries acked one by one in the flush that reports it. */
  readonly minSingles: number;
  /** Least time between two moves. */
  readonly minGapMs: number;
  /**
   * Old channels still holding deliveries, at most. Each holds at most a
   * prefetch window, so a worker holds about `(maxRetired + 1) × prefetch`
   * unacked deliveries at most (a prefetch reload can add a window for a
   * moment); past it, acks go one by one as before.
   */
  readonly maxRetired: number;
}

/**
 * The defaults. Each delivery acked alone costs the broker about 8 µs more
 * than one of a batch, and a move a few channel commands; at thousands of
 * deliveries a second a stall pays for a move within tens of milliseconds.
 * The head must still be 250 ms old, not less: on a busy or starved worker a
 * healthy merchant's notifications waiting their turn for its slots hold
 * heads for tens of milliseconds, and a move then adds a window of
 * deliveries to that merchant's queue, which the gate defers as too long
 * (docs/performance.md, stop 28: with 50 ms, controls without any bad
 * merchant moved 0–16 times per run and deferred up to 340 healthy
 * notifications; with 250 ms none moved or deferred).
 */
export const DEFAULT_LANE_POLICY: LanePolicy = Object.freeze({ stallMs: 250, stallFactor: 4, minSingles: 8, minGapMs: 100, maxRetired: 8 });

/** Pure: the policy with `delivery.consumerLanes` old lanes at most (0: never moves). */
export function lanePolicy(consumerLanes: number): LanePolicy {
  return Object.freeze({ ...DEFAULT_LANE_POLICY, maxRetired: consumerLanes });
}

/** What the worker knows when a flush reports a stall. */
export interface LaneState {
  /** Milliseconds since the last move (Infinity before the first). */
  readonly sinceLastMoveMs: number;
  /** Old channels not yet closed. */
  readonly retired: number;
  /** A move, a pause, a reconnect or a drain is under way, or the tier is not consuming. */
  readonly busy: boolean;
}

/** Pure: whether this stall is worth a new lane. */
export function shouldMoveLane(stall: AckStall, state: LaneState, policy: LanePolicy = DEFAULT_LANE_POLICY): boolean {
  if (state.busy) return false;
  if (state.retired >= policy.maxRetired) return false;
  if (state.sinceLastMoveMs < policy.minGapMs) return false;
  return stall.singles >= policy.minSingles && stall.headAgeMs >= Math.max(policy.stallMs, policy.stallFactor * stall.singlesAgeMs);
}
