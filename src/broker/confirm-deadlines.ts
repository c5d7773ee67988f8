/** How long a publish waits for the broker's confirm before it counts as failed (the ingress's and a tier's hand-ons). */
export const CONFIRM_TIMEOUT_MS = 10_000;

/** The clock and timer a `ConfirmDeadlines` uses; a test passes its own. */
export interface DeadlineClock {
  now(): number;
  every(ms: number, fn: () => void): { stop(): void };
}

const realClock: DeadlineClock = {
  now: () => performance.now(),
  every(ms, fn) {
    const t = setInterval(fn, ms);
    // A sweep never keeps a process alive on its own.
    t.unref();
    return { stop: () => clearInterval(t) };
  },
};

/**
 * Fails publishes whose confirm does not come within `timeoutMs`. Why:
 * RabbitMQ 3.10's quorum-queue client can lose track of a channel's pending
 * publishes across a leader change (rabbitmq-server #13095, #14589: never
 * resent, and later ones on that channel never enqueued), so a tier's
 * hand-on could wait for its confirm for ever, its delivery unacked
 * (test/cluster saw 17 stuck that way). The caller publishes again on a new
 * channel: at worst a duplicate, never a loss.
 *
 * One per connection, shared by its channels: one sweep timer for all (not
 * one timer per publish, on the hot path), running only while something
 * waits; publishes are swept in the order they were made, so a sweep stops
 * at the first one still in time. A publish is failed between `timeoutMs`
 * and `timeoutMs` plus one sweep interval (at most 1 s) late.
 *
 * While the broker blocks the connection (a memory or disk alarm) nothing
 * is failed: a blocked connection is not read at all, so no confirm can come,
 * and publishing again would only pile copies into the socket that the
 * broker would all take once the alarm clears. The time blocked does not
 * count towards a publish's timeout.
 */
export class ConfirmDeadlines {
  private readonly waiting = new Map<number, { at: number; readonly fail: () => void }>();
  private seq = 0;
  private sweeper: { stop(): void } | null = null;
  /** When the connection was blocked, or null. */
  private pausedAt: number | null = null;

  constructor(
    /** How long a publish may wait; 0 or less: for ever (nothing is tracked). */
    readonly timeoutMs: number = CONFIRM_TIMEOUT_MS,
    private readonly clock: DeadlineClock = realClock,
  ) {}

  /**
   * Tracks one publish: `fail` is called once its time is up, unless the
   * returned function (call it when the confirm or a failure came) was called first.
   */
  track(fail: () => void): () => void {
    if (!(this.timeoutMs > 0)) return () => undefined;
    const id = this.seq++;
    this.waiting.set(id, { at: this.clock.now(), fail });
    // Stopped only by a sweep that finds nothing waiting: at a low rate, not a timer per publish either.
    this.sweeper ??= this.clock.every(Math.max(10, Math.min(1000, this.timeoutMs / 4)), () => this.sweep());
    return () => void this.waiting.delete(id);
  }

  /** Publishes being waited for. */
  get size(): number {
    return this.waiting.size;
  }

  /** The connection is blocked: fail nothing until `resume`. */
  pause(): void {
    this.pausedAt ??= this.clock.now();
  }

  /**
   * The connection is unblocked: the time it was blocked does not count
   * (each deadline moves by it; one tracked meanwhile counts from now), but
   * the time waited before does, so an alarm that comes and goes cannot keep
   * a lost publish waiting for ever.
   */
  resume(): void {
    if (this.pausedAt === null) return;
    const now = this.clock.now();
    const pausedAt = this.pausedAt;
    this.pausedAt = null;
    for (const w of this.waiting.values()) w.at = w.at < pausedAt ? w.at + (now - pausedAt) : now;
  }

  private sweep(): void {
    if (this.waiting.size === 0) {
      this.sweeper?.stop();
      this.sweeper = null;
      return;
    }
    if (this.pausedAt !== null) return;
    const cutoff = this.clock.now() - this.timeoutMs;
    const late: (() => void)[] = [];
    for (const [id, w] of this.waiting) {
      if (w.at > cutoff) break;
      this.waiting.delete(id);
      late.push(w.fail);
    }
    for (const fail of late) fail();
  }
}
