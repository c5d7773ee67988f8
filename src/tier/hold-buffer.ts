/**
 * Deferred notifications a tier worker took straight from its hold queue,
 * kept in memory until their hold is over, then handed to the pipeline.
 *
 * Why: a hold queue's TTL sends an expired message back to the work queue
 * by dead-lettering, which on a quorum queue is a second replicated write
 * (and its settlement) per deferral; consuming the hold queue directly costs
 * one write, one delivery and one ack, about half the broker's CPU per
 * deferral (stop 21 measured the TTL path at about ten healthy deliveries').
 * The TTL stays on the queue as the safety net: what this buffer has no room
 * for (the hold consumer's prefetch is full), or what waits while the tier is
 * paused or down, still comes back through the work queue when it expires.
 */

/** The timer a buffer uses (injected by tests). */
export interface HoldTimers {
  /** A monotonic clock, ms: a wall clock stepped back would hold everything longer. */
  now(): number;
  /** Runs `fn` after `ms`; returns a cancel function. */
  later(fn: () => void, ms: number): () => void;
}

/** Node's timers; unref'd, so a held message never keeps a process alive. */
export const nodeHoldTimers: HoldTimers = {
  now: () => performance.now(),
  later(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

/**
 * When a held message is due: the time its deferral set, but never later than
 * a full hold from now (another daemon's clock, a header from a bad client)
 * and never "now" for one that carries none (a copy deferred by an older
 * notifyd): without a time it waits a full hold, so nothing loops through the
 * broker faster than the hold queue's TTL would.
 */
export function heldUntil(header: number | undefined, now: number, holdMs: number): number {
  if (header === undefined || !Number.isFinite(header)) return now + holdMs;
  return Math.min(header, now + holdMs);
}

/** A min-queue by due time with one timer for its head; items due at the same time keep their arrival order. */
export class HoldBuffer<T> {
  private readonly items: Array<{ readonly item: T; readonly dueAt: number }> = [];
  private cancelTimer: (() => void) | null = null;
  private timerAt = Infinity;

  constructor(
    private readonly onDue: (item: T) => void,
    private readonly timers: HoldTimers = nodeHoldTimers,
  ) {}

  get size(): number {
    return this.items.length;
  }

  /** Keeps `item` for `delayMs`; one already due (0 or less) is released on the next timer turn, not synchronously. */
  push(item: T, delayMs: number): void {
    const dueAt = this.timers.now() + delayMs;
    // Arrivals come in queue order, so nearly always at the back: search from there.
    let i = this.items.length;
    while (i > 0 && this.items[i - 1]!.dueAt > dueAt) i--;
    this.items.splice(i, 0, { item, dueAt });
    this.arm();
  }

  /** Everything still held, in due order; the buffer is empty afterwards (the consumer stops: they go back). */
  takeAll(): T[] {
    this.disarm();
    return this.items.splice(0).map((x) => x.item);
  }

  private arm(): void {
    const head = this.items[0];
    if (head === undefined) return this.disarm();
    if (this.cancelTimer !== null && this.timerAt <= head.dueAt) return;
    this.disarm();
    this.timerAt = head.dueAt;
    this.cancelTimer = this.timers.later(() => this.release(), Math.max(0, head.dueAt - this.timers.now()));
  }

  private disarm(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.timerAt = Infinity;
  }

  private release(): void {
    this.cancelTimer = null;
    this.timerAt = Infinity;
    const now = this.timers.now();
    let n = 0;
    while (n < this.items.length && this.items[n]!.dueAt <= now) n++;
    const due = this.items.splice(0, n);
    this.arm();
    for (const x of due) this.onDue(x.item);
  }
}
