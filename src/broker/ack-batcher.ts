/** The one call an ack batcher makes on its channel. */
export type AckFn = (deliveryTag: number, multiple: boolean) => void;

/** The timers a batcher uses (injected by tests). */
export interface AckTimers {
  /** Runs `fn` after `ms`; returns a cancel function. */
  later(fn: () => void, ms: number): () => void;
  /** Runs `fn` on the next event-loop turn; returns a cancel function. */
  soon(fn: () => void): () => void;
  /** Milliseconds on a monotonic clock; absent: `performance.now()`. */
  now?(): number;
}

/** Node's timers; the delay timer is unref'd, so a pending ack never keeps a process alive. */
export const nodeAckTimers: AckTimers = {
  later(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
  soon(fn) {
    const i = setImmediate(fn);
    return () => clearImmediate(i);
  },
};

/** When a batcher sends its acks. */
export interface AckBatchPolicy {
  /** The longest a finished delivery waits for its ack. */
  readonly maxDelayMs: number;
  /** This many finished deliveries are acked on the next event-loop turn, without waiting. */
  readonly maxBatch: number;
  /**
   * How long a delivery finished behind an unfinished one may wait for those
   * before it, so that one multiple ack covers it instead of an ack of its
   * own; 0: acked alone on the next flush. Never once `maxBatch` finished
   * ones wait.
   */
  readonly holdMs: number;
}

/**
 * How long a delivery finished behind an unfinished one waits for a
 * multiple ack. With two merchants whose deliveries wait for their origins'
 * slots unevenly (one merchant's in its origin's queue, the other's not),
 * most deliveries finish out of order, a few tens of milliseconds apart (a
 * window of 512 at 5,500/s turns over in about 90 ms): acked one by one
 * after 5 ms they made 700 single frames a second in the bench's control
 * runs. Held up to 100 ms, almost none (stop 26 in docs/performance.md); a
 * head held longer than that (a hanging merchant's attempt) is what consumer
 * lanes are for.
 */
const HOLD_MS = 100;

/**
 * The policy of a channel with `prefetch` unacked deliveries at most: acks
 * wait up to 5 ms, or until half of the prefetch window is done.
 *
 * On a quorum queue every ack frame becomes a Raft command the broker appends
 * to its log, so the number of ack frames, not of acked deliveries, is what
 * costs. Acking once per event-loop turn sent about one frame per 10
 * deliveries: the bench (7 runs each, same hour) measured RabbitMQ at 23 ms
 * of CPU per 1,000 notifications and notifyd at 17,444/s. Holding acks up to
 * 5 ms, bounded by half the window, gave 10–11 ms and 20,953–22,371/s over
 * four such benches. In 3-run
 * comparisons, bounds of a quarter or an eighth of the window flushed more
 * often (13.5 and 17 ms), and 10 ms without a bound held so much of the
 * window that throughput fell back to 17,400/s. Below a prefetch of 4 the
 * bound is 1: every ack goes out on the next turn, as before.
 * The cost is a wider crash window: up to 5 ms (more under CPU load) of
 * attempts made but not yet acked, and up to 100 ms of those finished
 * behind an unfinished one, are made again after a crash or a lost
 * connection, which at-least-once delivery allows.
 */
export function ackPolicyFor(prefetch: number): AckBatchPolicy {
  return { maxDelayMs: 5, maxBatch: Math.max(1, Math.floor(prefetch / 2)), holdMs: HOLD_MS };
}

/**
 * What a flush could not ack in one frame: `singles` deliveries finished
 * behind an unfinished one that has been on the channel `headAgeMs`; those
 * took `singlesAgeMs` on average from arrival to completion (about how long a
 * delivery takes).
 */
export interface AckStall {
  readonly singles: number;
  readonly headAgeMs: number;
  readonly singlesAgeMs: number;
}

/**
 * Coalesces acks of one channel. Deliveries are registered in arrival order
 * (delivery tags grow on a channel); completions mark them done, and a flush
 * acks the longest completed prefix with a single `multiple` ack. A flush
 * happens `maxDelayMs` after the first completion it covers, or on the next
 * turn once `maxBatch` completions wait, whichever comes first. Completed
 * ones behind an unfinished head wait up to `holdMs` for the prefix to reach
 * them, then are acked one by one (with those whose hold ends within
 * `maxDelayMs` after), so a slow attempt never holds finished ones (and
 * their prefetch slots) hostage for long.
 */
export class AckBatcher {
  /** Outstanding tags in arrival order, and when each arrived. */
  private readonly pending: number[] = [];
  private readonly arrived: number[] = [];
  /** The finished ones among them, with when each finished. */
  private readonly done = new Map<number, number>();
  private cancelTimer: (() => void) | null = null;
  /** When the armed timer fires (`Infinity`: none armed). */
  private timerAt = Infinity;
  private cancelSoon: (() => void) | null = null;
  private readonly now: () => number;

  constructor(
    private readonly ack: AckFn,
    private policy: AckBatchPolicy,
    private readonly timers: AckTimers = nodeAckTimers,
    /** Told after a flush that had to ack some deliveries one by one (see `AckStall`). */
    private readonly onStall?: (stall: AckStall) => void,
  ) {
    this.now = timers.now ? () => timers.now!() : () => performance.now();
  }

  /** Applies to completions from now on (the prefetch changed on a reload). */
  setPolicy(policy: AckBatchPolicy): void {
    this.policy = policy;
    // A smaller window may already have half of it finished and waiting.
    if (this.cancelSoon === null) this.sendSoonIfHalfDone();
  }

  /** Registers a delivery when it arrives. */
  track(tag: number): void {
    this.pending.push(tag);
    this.arrived.push(this.now());
  }

  /** Marks a delivery finished; its ack goes out on a later flush. */
  complete(tag: number): void {
    const now = this.now();
    this.done.set(tag, now);
    if (this.cancelSoon !== null || this.sendSoonIfHalfDone()) return;
    // Behind an unfinished head nothing can go before its hold is over (or the head finishes, which arms the short delay).
    const behind = this.policy.holdMs > 0 && tag !== this.pending[0];
    this.armIn(behind ? this.policy.holdMs : this.policy.maxDelayMs, now);
  }

  /** Once `maxBatch` finished ones wait (half the window), they go on the next turn, held or not. */
  private sendSoonIfHalfDone(): boolean {
    if (this.done.size === 0 || this.done.size < this.policy.maxBatch) return false;
    this.cancelSoon = this.timers.soon(() => this.send(false));
    return true;
  }

  /** Forgets a delivery that will not be acked here (nacked, or its channel is gone). */
  forget(tag: number): void {
    const i = this.pending.indexOf(tag);
    if (i >= 0) {
      this.pending.splice(i, 1);
      this.arrived.splice(i, 1);
    }
    this.done.delete(tag);
    // A forgotten head may leave a finished prefix behind it: it goes out as any other, not after its hold.
    if (i === 0 && this.done.has(this.pending[0]!) && this.cancelSoon === null) this.armIn(this.policy.maxDelayMs, this.now());
  }

  /** Sends every ack now, held ones too (a drain). */
  flush(): void {
    this.send(true);
  }

  /** Drops what is pending without acking it (the channel is gone; the broker requeues). Idempotent. */
  discard(): void {
    this.cancelTimers();
    this.pending.length = 0;
    this.arrived.length = 0;
    this.done.clear();
  }

  get outstanding(): number {
    return this.pending.length;
  }

  /** Acks the completed prefix, then those behind it that have waited long enough (all of them when `all`). */
  private send(all: boolean): void {
    this.cancelTimers();
    if (this.done.size === 0) return;
    let prefix = 0;
    while (prefix < this.pending.length && this.done.has(this.pending[prefix]!)) prefix++;
    if (prefix > 0) {
      const last = this.pending[prefix - 1]!;
      this.ack(last, prefix > 1);
      for (let i = 0; i < prefix; i++) this.done.delete(this.pending[i]!);
      this.pending.splice(0, prefix);
      this.arrived.splice(0, prefix);
    }
    if (this.done.size === 0) return;
    const now = this.now();
    const hold = all || this.done.size >= this.policy.maxBatch ? 0 : this.policy.holdMs;
    // Those due within the next short delay go with the ones due now: one flush every few milliseconds,
    // not one per completion, and a stall report that counts what a few milliseconds finished.
    const sendAt = Math.max(0, hold - this.policy.maxDelayMs);
    let nextDue = Infinity;
    let sent: Map<number, number> | null = null;
    for (const [tag, at] of this.done) {
      if (now - at >= sendAt) (sent ??= new Map()).set(tag, at);
      else nextDue = Math.min(nextDue, at + hold);
    }
    if (sent !== null) {
      const headAgeMs = this.arrived.length > 0 ? now - this.arrived[0]! : 0;
      for (const tag of sent.keys()) {
        this.done.delete(tag);
        this.ack(tag, false);
      }
      // One pass that keeps the unsent ones, in order, with their arrival times.
      let kept = 0;
      let took = 0;
      for (let i = 0; i < this.pending.length; i++) {
        const at = sent.get(this.pending[i]!);
        if (at !== undefined) {
          took += at - this.arrived[i]!;
          continue;
        }
        this.pending[kept] = this.pending[i]!;
        this.arrived[kept] = this.arrived[i]!;
        kept++;
      }
      this.pending.length = kept;
      this.arrived.length = kept;
      this.onStall?.({ singles: sent.size, headAgeMs, singlesAgeMs: took / sent.size });
    }
    if (this.done.size > 0) this.armIn(nextDue - now, now);
  }

  /** Arms the timer to flush `ms` from `now`, unless it already fires sooner. */
  private armIn(ms: number, now: number): void {
    if (this.cancelTimer !== null && this.timerAt <= now + ms) return;
    this.cancelTimer?.();
    this.timerAt = now + ms;
    this.cancelTimer = this.timers.later(() => {
      this.cancelTimer = null;
      this.timerAt = Infinity;
      this.send(false);
    }, ms);
  }

  private cancelTimers(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.timerAt = Infinity;
    this.cancelSoon?.();
    this.cancelSoon = null;
  }
}
