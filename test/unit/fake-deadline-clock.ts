// A clock for ConfirmDeadlines that moves only when a test says; shared by
// the tests of ConfirmDeadlines and of PublishChannel.
import type { DeadlineClock } from '../../src/broker/confirm-deadlines.js';

/** `advance` moves the time and runs the sweep, if one is running; `intervals` are the sweeps' periods as asked for. */
export function fakeDeadlineClock() {
  let now = 0;
  let sweep: (() => void) | null = null;
  const intervals: number[] = [];
  const clock: DeadlineClock = {
    now: () => now,
    every(ms, fn) {
      intervals.push(ms);
      sweep = fn;
      return { stop: () => (sweep = null) };
    },
  };
  return {
    clock,
    intervals,
    advance(ms: number): void {
      now += ms;
      sweep?.();
    },
    get sweeping(): boolean {
      return sweep !== null;
    },
  };
}
