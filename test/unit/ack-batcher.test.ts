import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckBatcher } from '../../src/ack-batcher.js';

function harness(): { b: AckBatcher; acks: [number, boolean][]; run: () => void } {
  const acks: [number, boolean][] = [];
  let queued: (() => void) | null = null;
  const b = new AckBatcher((tag, multiple) => acks.push([tag, multiple]), (fn) => (queued = fn));
  return { b, acks, run: () => { const f = queued; queued = null; f?.(); } };
}

describe('AckBatcher', () => {
  it('acks an in-order run with one multiple ack', () => {
    const { b, acks, run } = harness();
    for (const t of [1, 2, 3, 4]) b.track(t);
    for (const t of [1, 2, 3]) b.complete(t);
    run();
    assert.deepEqual(acks, [[3, true]]);
    assert.equal(b.outstanding, 1);
  });

  it('a single completion is a plain ack', () => {
    const { b, acks, run } = harness();
    b.track(7);
    b.complete(7);
    run();
    assert.deepEqual(acks, [[7, false]]);
  });

  it('completions behind a slow head are acked one by one, never covered by a later multiple', () => {
    const { b, acks, run } = harness();
    for (const t of [1, 2, 3, 4]) b.track(t);
    b.complete(3);
    b.complete(4);
    run();
    assert.deepEqual(acks, [[3, false], [4, false]]);
    b.complete(1);
    run();
    assert.deepEqual(acks.slice(2), [[1, false]]);
    b.complete(2);
    run();
    assert.deepEqual(acks.slice(3), [[2, false]]);
    assert.equal(b.outstanding, 0);
  });

  it('a forgotten (nacked) tag is never acked and does not block the prefix', () => {
    const { b, acks, run } = harness();
    for (const t of [1, 2, 3]) b.track(t);
    b.forget(1);
    b.complete(2);
    b.complete(3);
    run();
    assert.deepEqual(acks, [[3, true]]);
  });

  it('schedules one flush per burst of completions', () => {
    let scheduled = 0;
    const b = new AckBatcher(() => undefined, () => { scheduled++; });
    b.track(1); b.track(2);
    b.complete(1); b.complete(2);
    assert.equal(scheduled, 1);
  });
});
