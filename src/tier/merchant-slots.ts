/**
 * A merchant's own cap on attempts in flight in one tier worker
 * (`maxConcurrency`), on top of its origins' limits: a merchant with several
 * origins, or one that asked to be spared, gets no more than that.
 */
export class MerchantSlots {
  private readonly inflight = new Map<string, number>();

  /** Takes a slot if `id` has fewer than `max` in flight; false when it is full. */
  tryAcquire(id: string, max: number): boolean {
    const n = this.inflight.get(id) ?? 0;
    if (n >= max) return false;
    this.inflight.set(id, n + 1);
    return true;
  }

  release(id: string): void {
    const n = (this.inflight.get(id) ?? 1) - 1;
    if (n <= 0) this.inflight.delete(id);
    else this.inflight.set(id, n);
  }
}
