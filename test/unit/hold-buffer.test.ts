import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HoldBuffer, heldUntil, type HoldTimers } from '../../src/tier/hold-buffer.js';

/** A clock the test moves by hand; `advance` fires what falls due, in time order, as Node's timers would. */
function fakeClock(): HoldTimers & { advance(ms: number): void; armed(): number } {
  let now = 1_000_000;
  let next = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    later(fn, ms) {
      const id = next++;
      timers.set(id, { at: now + ms, fn });
      return () => timers.delete(id);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (due === undefined) break;
        timers.delete(due[0]);
        now = Math.max(now, due[1].at);
        due[1].fn();
      }
      now = end;
    },
    armed: () => timers.size,
  };
}

describe('hold buffer', () => {
  it('releases each item when it is due, in due order, with one timer armed at a time', () => {
    const clock = fakeClock();
    const out: string[] = [];
    const b = new HoldBuffer<string>((x) => out.push(x), clock);
    b.push('c', 300);
    b.push('a', 100);
    b.push('b', 200);
    b.push('a2', 100);
    assert.equal(b.size, 4);
    assert.equal(clock.armed(), 1);
    clock.advance(99);
    assert.deepEqual(out, [], 'nothing before its time');
    clock.advance(1);
    assert.deepEqual(out, ['a', 'a2'], 'same due time: arrival order');
    clock.advance(150);
    assert.deepEqual(out, ['a', 'a2', 'b']);
    clock.advance(50);
    assert.deepEqual(out, ['a', 'a2', 'b', 'c']);
    assert.equal(b.size, 0);
    assert.equal(clock.armed(), 0, 'no timer left when empty');
  });

  it('an item already due is released on the timer, not inside push', () => {
    const clock = fakeClock();
    const out: number[] = [];
    const b = new HoldBuffer<number>((x) => out.push(x), clock);
    b.push(1, -50);
    assert.deepEqual(out, []);
    clock.advance(0);
    assert.deepEqual(out, [1]);
  });

  it('takeAll gives back everything still held, in due order, and disarms', () => {
    const clock = fakeClock();
    const out: number[] = [];
    const b = new HoldBuffer<number>((x) => out.push(x), clock);
    b.push(2, 200);
    b.push(1, 100);
    assert.deepEqual(b.takeAll(), [1, 2]);
    assert.equal(clock.armed(), 0);
    clock.advance(1000);
    assert.deepEqual(out, [], 'what was taken is never released');
    b.push(3, 10);
    clock.advance(10);
    assert.deepEqual(out, [3], 'usable afterwards');
  });

  it('an earlier item pushed behind a later one re-arms for the earlier time', () => {
    const clock = fakeClock();
    const out: number[] = [];
    const b = new HoldBuffer<number>((x) => out.push(x), clock);
    b.push(2, 1000);
    b.push(1, 10);
    assert.equal(clock.armed(), 1);
    clock.advance(10);
    assert.deepEqual(out, [1]);
    assert.equal(clock.armed(), 1, 'armed again for the next one');
    clock.advance(990);
    assert.deepEqual(out, [1, 2]);
  });

  it('an item released by onDue may push another (a deferral taken back at once) without losing either', () => {
    const clock = fakeClock();
    const out: number[] = [];
    const b: HoldBuffer<number> = new HoldBuffer<number>((x) => {
      out.push(x);
      if (x === 1) b.push(10, 100);
    }, clock);
    b.push(1, 10);
    b.push(2, 10);
    clock.advance(10);
    assert.deepEqual(out, [1, 2]);
    clock.advance(100);
    assert.deepEqual(out, [1, 2, 10]);
  });
});

describe('heldUntil', () => {
  it('is the header, but never later than a full hold from now', () => {
    assert.equal(heldUntil(1500, 1000, 2000), 1500);
    assert.equal(heldUntil(900, 1000, 2000), 900, 'already over: at once');
    assert.equal(heldUntil(99_999, 1000, 2000), 3000, 'another clock, or a bad header: one hold at most');
  });

  it('without a header (deferred by an older notifyd) a full hold, so nothing loops faster than the TTL', () => {
    assert.equal(heldUntil(undefined, 1000, 2000), 3000);
    assert.equal(heldUntil(Number.NaN, 1000, 2000), 3000);
  });
});
