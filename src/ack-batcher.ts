/** The one call an ack batcher makes on its channel. */
export type AckFn = (deliveryTag: number, multiple: boolean) => void;

/**
 * Coalesces acks of one channel. Deliveries are registered in arrival order
 * (delivery tags grow on a channel); completions mark them done, and a flush
 * once per event-loop turn acks the longest completed prefix with a single
 * `multiple` ack, then any completed ones behind a slow head one by one, so a
 * slow attempt never holds finished ones (and their prefetch slots) hostage.
 */
export class AckBatcher {
  /** Outstanding tags in arrival order, and which of them are done. */
  private readonly pending: number[] = [];
  private readonly done = new Set<number>();
  private scheduled = false;

  constructor(
    private readonly ack: AckFn,
    private readonly schedule: (fn: () => void) => void = setImmediate,
  ) {}

  /** Registers a delivery when it arrives. */
  track(tag: number): void {
    this.pending.push(tag);
  }

  /** Marks a delivery finished; its ack goes out on the next flush. */
  complete(tag: number): void {
    this.done.add(tag);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.flush());
    }
  }

  /** Forgets a delivery that will not be acked here (nacked, or its channel is gone). */
  forget(tag: number): void {
    const i = this.pending.indexOf(tag);
    if (i >= 0) this.pending.splice(i, 1);
    this.done.delete(tag);
  }

  /** Sends the acks now. */
  flush(): void {
    this.scheduled = false;
    if (this.done.size === 0) return;
    let prefix = 0;
    while (prefix < this.pending.length && this.done.has(this.pending[prefix]!)) prefix++;
    if (prefix > 0) {
      const last = this.pending[prefix - 1]!;
      this.ack(last, prefix > 1);
      for (let i = 0; i < prefix; i++) this.done.delete(this.pending[i]!);
      this.pending.splice(0, prefix);
    }
    if (this.done.size > 0) {
      for (const tag of this.done) this.ack(tag, false);
      for (const tag of this.done) {
        const i = this.pending.indexOf(tag);
        if (i >= 0) this.pending.splice(i, 1);
      }
      this.done.clear();
    }
  }

  get outstanding(): number {
    return this.pending.length;
  }
}
