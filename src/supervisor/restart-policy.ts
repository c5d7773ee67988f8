/** Knobs of the restart policy (from `supervisor.*` config). */
export interface RestartPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
  /** Uptime after which the backoff starts over. */
  readonly resetMs: number;
  /** More restarts than this within `windowMs` is a crash loop. */
  readonly crashloopRestarts: number;
  readonly windowMs: number;
}

/** Per-slot memory of past restarts. */
export interface RestartHistory {
  /** Consecutive quick failures: the exponent of the backoff. */
  readonly consecutive: number;
  /** Times (ms) of restarts inside the window. */
  readonly recent: readonly number[];
  /**
   * In crash loop: set when the window fills, cleared only by a worker that
   * stays up `resetMs`. The window alone cannot end it: at the capped delay
   * fewer restarts fit in the window than it takes to enter.
   */
  readonly crashloop: boolean;
}

export const EMPTY_HISTORY: RestartHistory = Object.freeze({ consecutive: 0, recent: Object.freeze([]), crashloop: false });

export interface RestartDecision {
  readonly history: RestartHistory;
  readonly delayMs: number;
  readonly crashloop: boolean;
}

/**
 * Pure: what to do when a worker exits unexpectedly after `uptimeMs`.
 * Delay doubles from `baseMs` to `maxMs`; a worker that had stayed up
 * `resetMs` starts again from `baseMs`. Past `crashloopRestarts` restarts in
 * `windowMs` the slot is in crash loop and waits the capped delay each time,
 * until a worker stays up `resetMs`.
 */
export function decideRestart(history: RestartHistory, now: number, uptimeMs: number, p: RestartPolicy): RestartDecision {
  const stable = uptimeMs >= p.resetMs;
  const consecutive = stable ? 0 : history.consecutive;
  const recent = [...history.recent.filter((t) => now - t < p.windowMs), now];
  const crashloop = recent.length > p.crashloopRestarts || (history.crashloop && !stable);
  const backoff = Math.min(p.maxMs, p.baseMs * 2 ** Math.min(consecutive, 30));
  return {
    history: { consecutive: consecutive + 1, recent, crashloop: crashloop && !stable },
    delayMs: crashloop ? p.maxMs : backoff,
    crashloop,
  };
}

/** Pure: history after a worker has stayed up `resetMs`: the backoff starts over and any crash loop ends. */
export function afterStableUptime(history: RestartHistory): RestartHistory {
  return { consecutive: 0, recent: history.recent, crashloop: false };
}
