import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckBatcher, ackPolicyFor, nodeAckTimers, type AckBatchPolicy, type AckStall, type AckTimers } from '../../src/broker/ack-batcher.js';

/** Timers the test fires by hand; each kind holds at most what the batcher armed and did not cancel. */
function fakeTimers(): AckTimers & { fireLater: () => void; fireSoon: () => void; armed: () => { later: number[]; soon: number } } {
  let later = new Map<number, { fn: () => void; ms: number }>();
  let soon = new Map<number, () => void>();
  let next = 0;
  return {
    later(fn, ms) {
      const id = next++;
      later.set(id, { fn, ms });
      return () => later.delete(id);
    },
    soon(fn) {
      const id = next++;
      soon.set(id, fn);
      return () => soon.delete(id);
    },
    fireLater() {
      const due = later;
      later = new Map();
      for (const t of due.values()) t.fn();
    },
    fireSoon() {
      const due = soon;
      soon = new Map();
      for (const fn of due.values()) fn();
    },
    armed: () => ({ later: [...later.values()].map((t) => t.ms), soon: soon.size }),
  };
}

function harness(policy: AckBatchPolicy = { maxDelayMs: 5, maxBatch: 100, holdMs: 0 }) {
  const acks: [number, boolean][] = [];
  const timers = fakeTimers();
  const b = new AckBatcher((tag, multiple) => acks.push([tag, multiple]), policy, timers);
  return { b, acks, timers };
}

/** The acks of `tags` sent one by one, in order. */
const singles = (...tags: number[]): [number, boolean][] => tags.map((t) => [t, false]);

describe('AckBatcher', () => {
  it('acks an in-order run with one multiple ack', () => {
    const { b, acks, timers } = harness();
    for (const t of [1, 2, 3, 4]) b.track(t);
    for (const t of [1, 2, 3]) b.complete(t);
    timers.fireLater();
    assert.deepEqual(acks, [[3, true]]);
    assert.equal(b.outstanding, 1);
  });

  it('a single completion is a plain ack', () => {
    const { b, acks, timers } = harness();
    b.track(7);
    b.complete(7);
    timers.fireLater();
    assert.deepEqual(acks, [[7, false]]);
  });

  it('completions behind a slow head are acked one by one, never covered by a later multiple', () => {
    const { b, acks, timers } = harness();
    for (const t of [1, 2, 3, 4]) b.track(t);
    b.complete(3);
    b.complete(4);
    timers.fireLater();
    assert.deepEqual(acks, [[3, false], [4, false]]);
    b.complete(1);
    timers.fireLater();
    assert.deepEqual(acks.slice(2), [[1, false]]);
    b.complete(2);
    timers.fireLater();
    assert.deepEqual(acks.slice(3), [[2, false]]);
    assert.equal(b.outstanding, 0);
  });

  it('a forgotten (nacked) tag is never acked and does not block the prefix', () => {
    const { b, acks, timers } = harness();
    for (const t of [1, 2, 3]) b.track(t);
    b.forget(1);
    b.complete(2);
    b.complete(3);
    timers.fireLater();
    assert.deepEqual(acks, [[3, true]]);
  });

  it('below the batch size, acks wait for one timer of maxDelayMs armed by the first completion', () => {
    const { b, acks, timers } = harness({ maxDelayMs: 5, maxBatch: 3, holdMs: 0 });
    for (const t of [1, 2, 3]) b.track(t);
    b.complete(1);
    b.complete(2);
    assert.deepEqual(timers.armed(), { later: [5], soon: 0 });
    assert.deepEqual(acks, [], 'nothing is sent before the timer');
    timers.fireLater();
    assert.deepEqual(acks, [[2, true]]);
    assert.deepEqual(timers.armed(), { later: [], soon: 0 });
  });

  it('reaching the batch size sends on the next turn and cancels the timer', () => {
    const { b, acks, timers } = harness({ maxDelayMs: 5, maxBatch: 3, holdMs: 0 });
    for (const t of [1, 2, 3, 4]) b.track(t);
    b.complete(1);
    b.complete(2);
    b.complete(3);
    assert.deepEqual(timers.armed(), { later: [5], soon: 1 });
    b.complete(4);
    assert.equal(timers.armed().soon, 1, 'one turn-flush however many more complete');
    timers.fireSoon();
    assert.deepEqual(acks, [[4, true]]);
    assert.deepEqual(timers.armed(), { later: [], soon: 0 }, 'the flush cancelled the pending timer');
  });

  it('with a batch size of 1 every completion goes out on the next turn', () => {
    const { b, acks, timers } = harness(ackPolicyFor(1));
    b.track(1);
    b.complete(1);
    assert.deepEqual(timers.armed(), { later: [], soon: 1 });
    timers.fireSoon();
    assert.deepEqual(acks, [[1, false]]);
  });

  it('an explicit flush sends at once and disarms both timers', () => {
    const { b, acks, timers } = harness({ maxDelayMs: 5, maxBatch: 2, holdMs: 0 });
    for (const t of [1, 2]) b.track(t);
    b.complete(1);
    b.complete(2);
    b.flush();
    assert.deepEqual(acks, [[2, true]]);
    assert.deepEqual(timers.armed(), { later: [], soon: 0 });
  });

  it('discard drops pending acks and timers without sending anything, and may repeat', () => {
    const { b, acks, timers } = harness();
    for (const t of [1, 2]) b.track(t);
    b.complete(1);
    b.discard();
    b.discard();
    assert.equal(b.outstanding, 0);
    assert.deepEqual(timers.armed(), { later: [], soon: 0 });
    b.flush();
    assert.deepEqual(acks, []);
  });

  it('after a flush, the next completion arms a new timer (steady state)', () => {
    const { b, acks, timers } = harness({ maxDelayMs: 5, maxBatch: 100, holdMs: 0 });
    for (const t of [1, 2]) b.track(t);
    b.complete(1);
    timers.fireLater();
    b.complete(2);
    assert.deepEqual(timers.armed(), { later: [5], soon: 0 });
    timers.fireLater();
    assert.deepEqual(acks, [[1, false], [2, false]]);
  });

  it('a done tag forgotten while its timer is armed is not acked, and the rest still is', () => {
    const { b, acks, timers } = harness();
    for (const t of [1, 2, 3]) b.track(t);
    b.complete(1);
    b.complete(2);
    b.forget(2);
    b.complete(3);
    timers.fireLater();
    assert.deepEqual(acks, [[3, true]], 'one multiple ack over 1 and 3; 2 was settled elsewhere (nacked)');
    assert.equal(b.outstanding, 0);
  });

  it('a new policy applies to later completions', () => {
    const { b, timers } = harness({ maxDelayMs: 5, maxBatch: 100, holdMs: 0 });
    b.setPolicy({ maxDelayMs: 5, maxBatch: 1, holdMs: 0 });
    b.track(1);
    b.complete(1);
    assert.deepEqual(timers.armed(), { later: [], soon: 1 });
  });
});

describe('AckBatcher stalls', () => {
  /** A batcher on a clock the test moves, with the stalls it reported. */
  function clocked() {
    let t = 1000;
    const acks: [number, boolean][] = [];
    const stalls: AckStall[] = [];
    const timers = { ...fakeTimers(), now: () => t };
    const b = new AckBatcher((tag, multiple) => acks.push([tag, multiple]), { maxDelayMs: 5, maxBatch: 100, holdMs: 0 }, timers, (s) => stalls.push(s));
    return { b, acks, stalls, advance: (ms: number) => (t += ms) };
  }

  it('a flush that acks one by one behind an unfinished head reports how many and how old the head is', () => {
    const { b, acks, stalls, advance } = clocked();
    b.track(1);
    advance(300);
    for (const tag of [2, 3, 4]) b.track(tag);
    advance(100);
    for (const tag of [2, 3, 4]) b.complete(tag);
    b.flush();
    assert.deepEqual(acks, singles(2, 3, 4));
    // Tags 2–4 were tracked 100 ms before the flush.
    assert.deepEqual(stalls, [{ singles: 3, headAgeMs: 400, singlesAgeMs: 100 }]);
  });

  it('a flush that acks only a prefix reports nothing, and the head age follows the new head', () => {
    const { b, stalls, advance } = clocked();
    b.track(1);
    b.track(2);
    advance(50);
    b.track(3);
    b.track(4);
    b.complete(1);
    b.flush();
    assert.deepEqual(stalls, []);
    advance(10);
    b.complete(3);
    b.flush();
    // Tag 2 (arrived at 1000) is the head now, 60 ms old.
    assert.deepEqual(stalls, [{ singles: 1, headAgeMs: 60, singlesAgeMs: 10 }]);
    b.complete(2);
    b.complete(4);
    b.flush();
    assert.equal(b.outstanding, 0);
    assert.equal(stalls.length, 1);
  });

  it('keeps arrival times aligned when a tag in the middle is forgotten', () => {
    const { b, stalls, advance } = clocked();
    b.track(1);
    advance(100);
    b.track(2);
    advance(100);
    b.track(3);
    b.forget(1);
    advance(100);
    b.complete(3);
    b.flush();
    // The head is tag 2, tracked 200 ms ago, not tag 1's 300.
    assert.deepEqual(stalls, [{ singles: 1, headAgeMs: 200, singlesAgeMs: 100 }]);
  });
});

describe('AckBatcher holds', () => {
  /** A batcher holding finished deliveries 30 ms behind an unfinished head, on a clock the test moves. */
  function holding(maxBatch = 100) {
    let t = 1000;
    const acks: [number, boolean][] = [];
    const stalls: AckStall[] = [];
    const timers = { ...fakeTimers(), now: () => t };
    const b = new AckBatcher((tag, multiple) => acks.push([tag, multiple]), { maxDelayMs: 5, maxBatch, holdMs: 30 }, timers, (s) => stalls.push(s));
    return { b, acks, stalls, timers, advance: (ms: number) => (t += ms) };
  }

  it('a delivery finished behind an unfinished head waits for it, then one multiple ack covers all', () => {
    const { b, acks, stalls, timers, advance } = holding();
    for (const t of [1, 2, 3]) b.track(t);
    b.complete(2);
    b.complete(3);
    advance(5);
    timers.fireLater();
    assert.deepEqual(acks, [], 'held: the head may finish soon');
    assert.deepEqual(timers.armed(), { later: [25], soon: 0 }, 'until 30 ms after the first of them finished');
    advance(10);
    b.complete(1);
    assert.deepEqual(timers.armed(), { later: [5], soon: 0 }, 'the head finishing brings the flush forward to maxDelayMs');
    advance(5);
    timers.fireLater();
    assert.deepEqual(acks, [[3, true]]);
    assert.deepEqual(stalls, []);
    assert.equal(b.outstanding, 0);
    assert.deepEqual(timers.armed(), { later: [], soon: 0 });
  });

  it('past holdMs they are acked one by one, each once, and the stall says how long they took', () => {
    const { b, acks, stalls, timers, advance } = holding();
    for (const t of [1, 2, 3, 4]) b.track(t);
    advance(4);
    b.complete(2);
    advance(6);
    b.complete(3);
    advance(5);
    timers.fireLater(); // t = 1015: nothing due yet
    assert.deepEqual(acks, []);
    advance(19);
    timers.fireLater(); // t = 1034: tag 2 (finished at 1004) is due, tag 3 (1010) not yet
    assert.deepEqual(acks, [[2, false]]);
    assert.deepEqual(stalls, [{ singles: 1, headAgeMs: 34, singlesAgeMs: 4 }]);
    assert.deepEqual(timers.armed(), { later: [6], soon: 0 });
    advance(6);
    timers.fireLater();
    assert.deepEqual(acks, [
      [2, false],
      [3, false],
    ]);
    assert.deepEqual(stalls[1], { singles: 1, headAgeMs: 40, singlesAgeMs: 10 });
    b.complete(1);
    b.complete(4);
    timers.fireLater();
    assert.deepEqual(acks.slice(2), [[4, true]], 'the prefix ack covers 1 and 4 only; 2 and 3 are gone from it');
    assert.equal(b.outstanding, 0);
  });

  it('never holds once maxBatch finished ones wait: the window is half done', () => {
    const { b, acks, stalls, timers } = holding(3);
    for (const t of [1, 2, 3, 4]) b.track(t);
    b.complete(2);
    b.complete(3);
    assert.equal(timers.armed().soon, 0);
    b.complete(4);
    assert.equal(timers.armed().soon, 1);
    timers.fireSoon();
    assert.deepEqual(acks, singles(2, 3, 4));
    assert.equal(stalls[0]!.singles, 3);
  });

  it('an explicit flush (a drain) sends held ones too', () => {
    const { b, acks, timers } = holding();
    for (const t of [1, 2]) b.track(t);
    b.complete(2);
    b.flush();
    assert.deepEqual(acks, [[2, false]]);
    assert.deepEqual(timers.armed(), { later: [], soon: 0 });
  });

  it('a held one whose head is forgotten (nacked) goes as a prefix within maxDelayMs, not after its hold', () => {
    const { b, acks, timers, advance } = holding();
    for (const t of [1, 2, 3]) b.track(t);
    b.complete(2);
    b.complete(3);
    advance(5);
    timers.fireLater();
    assert.deepEqual(acks, []);
    b.forget(1);
    assert.deepEqual(timers.armed(), { later: [5], soon: 0 }, 'brought forward from the hold');
    advance(5);
    timers.fireLater();
    assert.deepEqual(acks, [[3, true]], 'one multiple ack for the prefix the forgotten head left');
    assert.equal(b.outstanding, 0);
  });

  it('a forgotten head whose successor is unfinished too arms nothing new: the held ones keep their hold', () => {
    const { b, timers } = holding();
    for (const t of [1, 2, 3]) b.track(t);
    b.complete(3);
    b.forget(1);
    assert.deepEqual(timers.armed(), { later: [30], soon: 0 });
  });

  it('a policy with a smaller window flushes on the next turn when half of it is already finished and waiting', () => {
    const { b, acks, timers } = holding(100);
    for (const t of [1, 2, 3, 4]) b.track(t);
    for (const t of [2, 3, 4]) b.complete(t);
    assert.equal(timers.armed().soon, 0);
    b.setPolicy({ maxDelayMs: 5, maxBatch: 2, holdMs: 30 });
    assert.equal(timers.armed().soon, 1);
    timers.fireSoon();
    assert.deepEqual(acks, singles(2, 3, 4));
  });

  it('a completion behind an unfinished head arms the hold, not the short delay: no wake-up that could send nothing', () => {
    const { b, timers } = holding();
    for (const t of [1, 2]) b.track(t);
    b.complete(2);
    assert.deepEqual(timers.armed(), { later: [30], soon: 0 });
  });

  it('a flush past the hold also takes those due within maxDelayMs, so a stall report counts a few milliseconds of completions', () => {
    const { b, acks, stalls, timers, advance } = holding();
    b.track(1);
    for (let tag = 2; tag <= 21; tag++) b.track(tag);
    // One completion per millisecond behind the stuck head, as at 1,000/s.
    for (let tag = 2; tag <= 21; tag++) {
      b.complete(tag);
      advance(1);
    }
    advance(10); // t = 1030: tag 2 finished at 1000 is due
    timers.fireLater();
    // Tags 2–7 finished at 1000–1005, within 5 ms of the first: one flush, one report of 6.
    assert.deepEqual(acks, singles(2, 3, 4, 5, 6, 7));
    assert.deepEqual(stalls, [{ singles: 6, headAgeMs: 30, singlesAgeMs: 2.5 }]);
    assert.deepEqual(timers.armed(), { later: [6], soon: 0 }, 'next: tag 8, finished at 1006, due at 1036');
  });
});

describe('ackPolicyFor', () => {
  it('holds acks up to 5 ms or half the prefetch window, never less than one, and out-of-order ones up to 100 ms', () => {
    assert.deepEqual(ackPolicyFor(256), { maxDelayMs: 5, maxBatch: 128, holdMs: 100 });
    assert.deepEqual(ackPolicyFor(3), { maxDelayMs: 5, maxBatch: 1, holdMs: 100 });
    assert.deepEqual(ackPolicyFor(1), { maxDelayMs: 5, maxBatch: 1, holdMs: 100 });
  });
});

describe('nodeAckTimers', () => {
  it('fires both kinds, and a cancelled one never fires', async () => {
    const fired: string[] = [];
    nodeAckTimers.later(() => fired.push('later'), 1);
    nodeAckTimers.soon(() => fired.push('soon'));
    nodeAckTimers.later(() => fired.push('cancelled later'), 1)();
    nodeAckTimers.soon(() => fired.push('cancelled soon'))();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(fired.sort(), ['later', 'soon']);
  });
});
