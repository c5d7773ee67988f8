import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EMPTY_HISTORY, afterStableUptime, decideRestart, type RestartHistory, type RestartPolicy } from '../../src/supervisor/restart-policy.js';

/** DESIGN §7: 100 ms doubling to 30 s, reset after 30 s up, crashloop past 5 restarts in 60 s. */
const POLICY: RestartPolicy = Object.freeze({ baseMs: 100, maxMs: 30_000, resetMs: 30_000, crashloopRestarts: 5, windowMs: 60_000 });

/** Quick failures (uptime 10 ms) spaced `gapMs` apart; returns each decision. */
function quickFailures(count: number, gapMs: number, start = 1_000_000, history: RestartHistory = EMPTY_HISTORY) {
  const out = [];
  let h = history;
  for (let i = 0; i < count; i++) {
    const d = decideRestart(h, start + i * gapMs, 10, POLICY);
    out.push(d);
    h = d.history;
  }
  return out;
}

describe('decideRestart backoff', () => {
  it('doubles from 100 ms and caps at 30 s for quick consecutive failures', () => {
    // Spaced far enough apart that the crash-loop window never fills.
    const delays = quickFailures(12, 20_000).map((d) => d.delayMs);
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000]);
  });

  it('counts consecutive failures in the history', () => {
    const ds = quickFailures(3, 20_000);
    assert.deepEqual(ds.map((d) => d.history.consecutive), [1, 2, 3]);
  });

  it('stays capped (no overflow) after very many failures', () => {
    const h: RestartHistory = { consecutive: 5000, recent: [], crashloop: false };
    const d = decideRestart(h, 0, 0, POLICY);
    assert.equal(d.delayMs, 30_000);
    assert.ok(Number.isFinite(d.delayMs));
  });

  it('starts over at 100 ms after an uptime ≥ resetMs', () => {
    const [, , , , last] = quickFailures(5, 20_000);
    assert.equal(last!.delayMs, 1600);
    const d = decideRestart(last!.history, 5_000_000, 30_000, POLICY);
    assert.equal(d.delayMs, 100);
    assert.equal(d.history.consecutive, 1);
    const next = decideRestart(d.history, 5_020_000, 10, POLICY);
    assert.equal(next.delayMs, 200, 'then doubles again');
  });

  it('an uptime just under resetMs keeps the backoff growing', () => {
    const h: RestartHistory = { consecutive: 4, recent: [], crashloop: false };
    assert.equal(decideRestart(h, 0, 29_999, POLICY).delayMs, 1600);
  });

  it('does not mutate the history it is given', () => {
    const h: RestartHistory = { consecutive: 2, recent: [1, 2], crashloop: false };
    const copy = structuredClone(h);
    decideRestart(h, 3, 10, POLICY);
    assert.deepEqual(h, copy);
    decideRestart(EMPTY_HISTORY, 3, 10, POLICY);
    assert.deepEqual(EMPTY_HISTORY, { consecutive: 0, recent: [], crashloop: false });
  });
});

describe('decideRestart crash loop', () => {
  it('the 6th restart within 60 s is a crash loop and waits the capped delay', () => {
    const ds = quickFailures(8, 1000);
    assert.deepEqual(ds.map((d) => d.crashloop), [false, false, false, false, false, true, true, true]);
    assert.deepEqual(ds.slice(0, 5).map((d) => d.delayMs), [100, 200, 400, 800, 1600]);
    for (const d of ds.slice(5)) assert.equal(d.delayMs, 30_000);
  });

  it('keeps only restarts inside the window in the history', () => {
    const ds = quickFailures(3, 40_000);
    assert.deepEqual(ds[2]!.history.recent, [1_040_000, 1_080_000]);
  });

  it('restarts outside the window do not count', () => {
    // Five restarts long ago, then one now: only one is in the window.
    const old = quickFailures(5, 1000, 0);
    const d = decideRestart(old[4]!.history, 200_000, 10, POLICY);
    assert.equal(d.crashloop, false);
    assert.deepEqual(d.history.recent, [200_000]);
  });

  it('six restarts spread just over the window are not a crash loop', () => {
    // 12.001 s apart: the first has left the 60 s window when the sixth comes.
    const ds = quickFailures(6, 12_001);
    assert.equal(ds[5]!.crashloop, false);
    assert.equal(ds[5]!.history.recent.length, 5);
  });

  it('a restart exactly windowMs ago has left the window', () => {
    const h: RestartHistory = { consecutive: 0, recent: [0, 60_000, 60_001, 60_002, 60_003], crashloop: false };
    const d = decideRestart(h, 60_000 + 60_000, 10, POLICY);
    assert.deepEqual(d.history.recent, [60_001, 60_002, 60_003, 120_000]);
    assert.equal(d.crashloop, false);
  });

  it('leaves crash loop once the window empties', () => {
    const ds = quickFailures(6, 1000);
    assert.equal(ds[5]!.crashloop, true);
    const later = decideRestart(ds[5]!.history, 1_000_000 + 5000 + 60_000, 40_000, POLICY);
    assert.equal(later.crashloop, false);
    assert.equal(later.delayMs, 100, 'and, having been up ≥ resetMs, backs off from the base again');
  });

  it('stays in crash loop while the worker keeps failing at the capped delay, though fewer restarts than the threshold then fit in the window', () => {
    const ds = quickFailures(6, 1000);
    assert.equal(ds[5]!.crashloop, true);
    // At the capped 30 s (plus 10 ms up) only two restarts fit in 60 s.
    const more = quickFailures(10, 30_010, 1_000_000 + 5000 + 30_010, ds[5]!.history);
    for (const d of more) {
      assert.equal(d.crashloop, true);
      assert.equal(d.delayMs, 30_000);
    }
    for (const d of more.slice(3)) assert.ok(d.history.recent.length < POLICY.crashloopRestarts, 'the window alone would have cleared it');
  });

  it('a worker that stays up resetMs ends the crash loop (at its exit or by the stable timer)', () => {
    const ds = quickFailures(6, 1000);
    const up = decideRestart(ds[5]!.history, 1_040_000, 30_000, POLICY);
    assert.equal(up.crashloop, true, 'still six restarts in the window');
    const after = decideRestart(up.history, 1_400_000, 10, POLICY);
    assert.equal(after.crashloop, false, 'the stable run ended it once the window emptied');
    const cleared = afterStableUptime(ds[5]!.history);
    assert.equal(cleared.crashloop, false);
    assert.equal(decideRestart(cleared, 1_400_000, 10, POLICY).crashloop, false);
  });

  it('honours a custom policy', () => {
    const p: RestartPolicy = { baseMs: 10, maxMs: 50, resetMs: 1000, crashloopRestarts: 2, windowMs: 100 };
    let h = EMPTY_HISTORY;
    const got: Array<[number, boolean]> = [];
    for (let i = 0; i < 4; i++) {
      const d = decideRestart(h, i * 10, 0, p);
      got.push([d.delayMs, d.crashloop]);
      h = d.history;
    }
    assert.deepEqual(got, [[10, false], [20, false], [50, true], [50, true]]);
  });
});

describe('afterStableUptime', () => {
  it('resets consecutive and keeps recent restarts', () => {
    const h: RestartHistory = { consecutive: 7, recent: [1, 2, 3], crashloop: false };
    const r = afterStableUptime(h);
    assert.equal(r.consecutive, 0);
    assert.deepEqual(r.recent, [1, 2, 3]);
    assert.equal(h.consecutive, 7, 'input untouched');
  });

  it('the next quick failure then starts at 100 ms', () => {
    const ds = quickFailures(6, 20_000);
    assert.equal(ds[5]!.delayMs, 3200);
    const d = decideRestart(afterStableUptime(ds[5]!.history), 3_000_000, 10, POLICY);
    assert.equal(d.delayMs, 100);
  });
});
