// When a console page asks the daemon again (console/src/poller.ts, pure):
// never two loads at once, and a refresh during a load is not lost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Poller, type PollState, type PollerEnv } from '../../console/src/poller.js';

/** Timers a test fires by hand; loads the test answers by hand. */
function harness(everyMs: number | null, onShow = true) {
  const timers = new Map<number, { fn: () => void; ms: number }>();
  let nextId = 1;
  let hidden = false;
  const env: PollerEnv = {
    setTimeout: (fn, ms) => {
      timers.set(nextId, { fn, ms });
      return nextId++;
    },
    clearTimeout: (id) => void timers.delete(id),
    now: () => 1000,
    hidden: () => hidden,
  };
  const pending: { resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  let state: PollState<string> = { data: null, error: null, at: null };
  const poller = new Poller<string>(
    () => new Promise<string>((resolve, reject) => pending.push({ resolve, reject })),
    everyMs,
    (next) => (state = next(state)),
    env,
    onShow,
  );
  const settle = () => new Promise((r) => setImmediate(r));
  return {
    poller,
    timers,
    pending,
    get state() {
      return state;
    },
    setHidden: (h: boolean) => (hidden = h),
    settle,
    /** Fires every timer set now. */
    tick: () => {
      const due = [...timers.values()];
      timers.clear();
      for (const t of due) t.fn();
    },
  };
}

describe('console poller', () => {
  it('a refresh while a load is under way loads once more after it: the list shown is never the one from before the action', async () => {
    const h = harness(null);
    h.poller.run();
    assert.equal(h.pending.length, 1, 'the first load');
    // An action completes and refreshes while the first load (sent before the action) is still out.
    h.poller.run();
    h.poller.run();
    assert.equal(h.pending.length, 1, 'never two loads at once');
    h.pending[0]!.resolve('before the action');
    await h.settle();
    assert.equal(h.state.data, 'before the action');
    assert.equal(h.pending.length, 2, 'the refresh asked for is made once the first is back (once, however many were asked for)');
    h.pending[1]!.resolve('after the action');
    await h.settle();
    assert.equal(h.state.data, 'after the action');
    assert.equal(h.pending.length, 2, 'and no more: without everyMs nothing else loads');
    assert.equal(h.timers.size, 0);
  });

  it('polls everyMs after each answer, keeps the last data through an error, sets no tick while hidden, and loads when shown again', async () => {
    const h = harness(5000);
    h.poller.run();
    h.pending[0]!.resolve('one');
    await h.settle();
    assert.deepEqual([...h.timers.values()].map((t) => t.ms), [5000]);
    h.tick();
    h.pending[1]!.reject(new Error('daemon away'));
    await h.settle();
    assert.equal(h.state.data, 'one', 'the last answer stays on the page');
    assert.equal((h.state.error as Error).message, 'daemon away');
    h.setHidden(true);
    h.tick();
    h.pending[2]!.resolve('two');
    await h.settle();
    assert.equal(h.timers.size, 0, 'hidden: no next tick');
    h.poller.visible();
    assert.equal(h.pending.length, 3, 'still hidden: nothing');
    h.setHidden(false);
    h.poller.visible();
    assert.equal(h.pending.length, 4, 'shown again: a load at once');
    h.poller.visible();
    assert.equal(h.pending.length, 4, 'not a second while it is out');
  });

  it('without an interval it loads again when the tab shows again, unless onShow is off (a listing only on demand)', async () => {
    const h = harness(null);
    h.poller.run();
    h.pending[0]!.resolve('one');
    await h.settle();
    h.poller.visible();
    assert.equal(h.pending.length, 2, 'the merchants page: shown again, loaded again');
    const parked = harness(null, false);
    parked.poller.run();
    parked.pending[0]!.resolve('one');
    await parked.settle();
    parked.poller.visible();
    assert.equal(parked.pending.length, 1, 'the parked listing: not on show');
    parked.poller.run();
    assert.equal(parked.pending.length, 2, 'asked: it loads');
  });

  it('a refresh while a tick is pending loads once and the tick goes; setEvery(null) stops the ticks without a request, a number loads now and ticks again', async () => {
    const h = harness(5000);
    h.poller.run();
    h.pending[0]!.resolve('one');
    await h.settle();
    assert.equal(h.timers.size, 1);
    h.poller.run();
    assert.equal(h.pending.length, 2, 'the refresh loads at once');
    assert.equal(h.timers.size, 0, 'and the pending tick is gone (no second load when it would have fired)');
    h.pending[1]!.resolve('two');
    await h.settle();
    assert.equal(h.timers.size, 1);
    h.poller.setEvery(null);
    assert.equal(h.timers.size, 0, 'no more ticks');
    assert.equal(h.pending.length, 2, 'and no request for it (an endpoint found missing is not asked again)');
    h.poller.setEvery(2000);
    assert.equal(h.pending.length, 3, 'an interval again: a load now');
    h.pending[2]!.resolve('three');
    await h.settle();
    assert.deepEqual([...h.timers.values()].map((t) => t.ms), [2000]);
  });

  it('stop() ends ticks and updates, even of a load under way; it is idempotent', async () => {
    const h = harness(5000);
    h.poller.run();
    h.poller.run(); // a refresh asked for while it was out
    h.poller.stop();
    h.poller.stop();
    h.pending[0]!.resolve('late');
    await h.settle();
    assert.equal(h.state.data, null, 'an answer after stop is not shown');
    assert.equal(h.pending.length, 1, 'nor the refresh asked for before stop made');
    assert.equal(h.timers.size, 0);
    h.poller.run();
    assert.equal(h.pending.length, 1, 'no load after stop');
  });
});
