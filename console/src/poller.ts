/**
 * When a page asks the daemon again: pure of the DOM and preact, so the
 * order of loads, refreshes and timers can be tested in node
 * (test/unit/console-poller.test.ts); `usePoll` wraps it.
 */

/** What the page shows: the last answer, the last error, and when either came. */
export interface PollState<T> {
  readonly data: T | null;
  readonly error: unknown;
  /** When the last answer (or error) came (ms epoch), null before the first. */
  readonly at: number | null;
}

/** The timers, clock and visibility the poller runs on (the browser's, or a test's). */
export interface PollerEnv {
  setTimeout(fn: () => void, ms: number): number;
  clearTimeout(id: number): void;
  now(): number;
  /** The tab is hidden: no new tick is set (the next one comes when it shows again). */
  hidden(): boolean;
}

/**
 * Calls `load` at `run()` and then `everyMs` after each answer (never two at
 * once, so a slow daemon is not piled on); `everyMs` null loads only when
 * asked and when the tab shows again. A `run()` while a load is under way (a
 * refresh after an action) loads once more as soon as that one is done: the
 * load under way may have been sent before the action and come back without it.
 */
export class Poller<T> {
  private busy = false;
  private again = false;
  private stopped = false;
  private timer: number | null = null;

  constructor(
    private readonly load: () => Promise<T>,
    private everyMs: number | null,
    /** Gets each new state from the previous one (preact's setState takes such an updater). */
    private readonly update: (next: (prev: PollState<T>) => PollState<T>) => void,
    private readonly env: PollerEnv,
    /** Load when the tab shows again (false: a load with a cost of its own, such as the parked listing, only when asked). */
    private readonly onShow = true,
  ) {}

  /** Loads now, or once more right after the load under way. */
  run(): void {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    void this.loadOnce();
  }

  /**
   * Another interval: null stops the ticks (no request more, e.g. for an
   * endpoint found missing); a number loads now (after the load under way)
   * and ticks from there. The same poller goes on, so no second load can
   * start beside one still out.
   */
  setEvery(everyMs: number | null): void {
    if (everyMs === this.everyMs) return;
    this.everyMs = everyMs;
    if (this.timer !== null) this.env.clearTimeout(this.timer);
    this.timer = null;
    if (everyMs !== null) this.run();
  }

  /** The tab shows again: load now (unless `onShow` is off) unless a load or a tick is already on its way. */
  visible(): void {
    if (this.onShow && !this.env.hidden() && this.timer === null && !this.busy) this.run();
  }

  /** No more loads, ticks or updates (the page is gone); idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.env.clearTimeout(this.timer);
    this.timer = null;
  }

  private async loadOnce(): Promise<void> {
    this.busy = true;
    this.again = false;
    if (this.timer !== null) this.env.clearTimeout(this.timer);
    this.timer = null;
    try {
      const data = await this.load();
      if (!this.stopped) this.update(() => ({ data, error: null, at: this.env.now() }));
    } catch (error) {
      if (!this.stopped) this.update((s) => ({ data: s.data, error, at: this.env.now() }));
    } finally {
      this.busy = false;
      if (this.again) this.run();
      else if (!this.stopped && this.everyMs !== null && !this.env.hidden()) this.timer = this.env.setTimeout(() => this.run(), this.everyMs);
    }
  }
}
