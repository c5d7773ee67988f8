// ConfirmDeadlines: publishes whose confirm is late are failed, in order,
// by one sweep that runs only while something waits (a fake clock).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConfirmChannel } from 'amqplib';
import { ConfirmDeadlines } from '../../src/broker/confirm-deadlines.js';
import { publishConfirmed } from '../../src/broker/confirm.js';
import { fakeDeadlineClock as fakeClock } from './fake-deadline-clock.js';

describe('ConfirmDeadlines', () => {
  it('fails only the publishes older than the timeout, oldest first, each once', () => {
    const c = fakeClock();
    const d = new ConfirmDeadlines(1000, c.clock);
    const failed: string[] = [];
    d.track(() => failed.push('a'));
    c.advance(400);
    d.track(() => failed.push('b'));
    c.advance(599);
    assert.deepEqual(failed, []);
    c.advance(1);
    assert.deepEqual(failed, ['a']);
    c.advance(400);
    assert.deepEqual(failed, ['a', 'b']);
    c.advance(5000);
    assert.deepEqual(failed, ['a', 'b']);
    assert.equal(d.size, 0);
  });

  it('a publish settled in time is never failed; the sweep stops at the first sweep that finds nothing waiting, and starts again', () => {
    const c = fakeClock();
    const d = new ConfirmDeadlines(1000, c.clock);
    const failed: string[] = [];
    const done = d.track(() => failed.push('a'));
    assert.equal(c.sweeping, true);
    assert.deepEqual(c.intervals, [250]);
    c.advance(500);
    done();
    done();
    // Not stopped by the settle itself: at a low rate that would be a timer per publish again.
    assert.equal(c.sweeping, true);
    d.track(() => failed.push('x'))();
    assert.deepEqual(c.intervals, [250], 'the same sweep, not a new one');
    c.advance(250);
    assert.equal(c.sweeping, false);
    c.advance(5000);
    assert.equal(failed.length, 0);
    d.track(() => failed.push('b'));
    assert.equal(c.sweeping, true);
    c.advance(1000);
    assert.deepEqual(failed, ['b']);
    c.advance(250);
    assert.equal(c.sweeping, false);
  });

  it('fails nothing while paused (the broker blocks the connection); the time blocked does not count, the time before does', () => {
    const c = fakeClock();
    const d = new ConfirmDeadlines(1000, c.clock);
    const failed: string[] = [];
    d.track(() => failed.push('a'));
    c.advance(900);
    d.pause();
    d.track(() => failed.push('b'));
    c.advance(60_000);
    assert.equal(failed.length, 0);
    d.resume();
    c.advance(99);
    assert.equal(failed.length, 0);
    c.advance(1);
    assert.deepEqual(failed, ['a'], 'a had waited 900 ms before the block');
    c.advance(900);
    assert.deepEqual(failed, ['a', 'b'], 'b counts from the resume');
  });

  it('an alarm that comes and goes cannot keep a lost publish waiting for ever', () => {
    const c = fakeClock();
    const d = new ConfirmDeadlines(1000, c.clock);
    let failed = false;
    d.track(() => (failed = true));
    for (let i = 0; i < 5 && !failed; i++) {
      c.advance(300);
      d.pause();
      c.advance(5000);
      d.resume();
    }
    assert.equal(failed, true);
  });

  it('a timeout of 0 tracks nothing and never sweeps', () => {
    const c = fakeClock();
    const d = new ConfirmDeadlines(0, c.clock);
    let failed = false;
    d.track(() => (failed = true))();
    d.track(() => (failed = true));
    c.advance(1e9);
    assert.equal(failed, false);
    assert.equal(c.sweeping, false);
    assert.equal(d.size, 0);
  });
});

describe('handOnFailureReason', () => {
  it('names each way a hand-on can fail by its code', async () => {
    const { handOnFailureReason } = await import('../../src/broker/confirm.js');
    const { ErrorCodes } = await import('../../src/core/errors.js');
    assert.equal(handOnFailureReason({ code: ErrorCodes.BROKER_NACK }), 'refused');
    assert.equal(handOnFailureReason({ code: ErrorCodes.BROKER_UNAVAILABLE }), 'unroutable');
    assert.equal(handOnFailureReason({ code: ErrorCodes.BROKER_CONFIRM_TIMEOUT }), 'unconfirmed');
    assert.equal(handOnFailureReason({ code: ErrorCodes.INTERNAL }), 'error');
    assert.equal(handOnFailureReason({}), 'error');
  });
});

describe('publishConfirmed: how a failed publish is classed', () => {
  const publishing = (fail: { sync?: string; cb?: string }) =>
    publishConfirmed(
      {
        publish: (_e: string, _k: string, _c: Buffer, _o: unknown, cb: (err: Error | null) => void) => {
          if (fail.sync) throw new Error(fail.sync);
          setImmediate(() => cb(fail.cb ? new Error(fail.cb) : null));
          return true;
        },
      } as unknown as ConfirmChannel,
      '',
      'q',
      Buffer.from('x'),
      {},
    );

  it("a channel or connection closed or closing is the broker's absence (BROKER_UNAVAILABLE: retried on the next channel), not an internal error", async () => {
    for (const sync of ['Channel closed', 'Channel closing', 'Connection closing']) {
      await assert.rejects(publishing({ sync }), { code: 'BROKER_UNAVAILABLE' }, sync);
    }
    await assert.rejects(publishing({ cb: 'channel closed' }), { code: 'BROKER_UNAVAILABLE' });
  });

  it('a nack is BROKER_NACK; a value amqplib cannot encode is INTERNAL', async () => {
    await assert.rejects(publishing({ cb: 'message nacked' }), { code: 'BROKER_NACK' });
    await assert.rejects(publishing({ sync: 'cannot encode field x' }), { code: 'INTERNAL' });
    await publishing({});
  });
});
