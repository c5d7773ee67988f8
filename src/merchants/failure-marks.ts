/**
 * Feeds auto-disable without a database write per attempt: a tier worker
 * writes only when what it just saw (the merchant failing, or succeeding)
 * differs from what the registry holds, and then at most once per merchant
 * and direction every `minGapMs` (its copy of the registry catches up within
 * about a second of a write, through NOTIFY).
 */
export class FailureMarks {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly write: (merchant: string, failing: boolean) => void,
    private readonly minGapMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** An attempt for `merchant` succeeded (`failing` false) or failed; `registryFailing` is what the registry holds. */
  note(merchant: string, failing: boolean, registryFailing: boolean): void {
    if (failing === registryFailing) return;
    const key = `${failing ? 'f' : 's'}:${merchant}`;
    const t = this.now();
    if (t - (this.last.get(key) ?? -Infinity) < this.minGapMs) return;
    if (this.last.size > 50_000) this.last.clear();
    this.last.set(key, t);
    this.write(merchant, failing);
  }
}
