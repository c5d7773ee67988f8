// closeWithin: an amqplib connection whose broker sends no close-ok has its
// socket destroyed after the grace; one that closes in time is left alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { closeWithin } from '../../src/broker/connection.js';
import { settleWithin } from '../../src/broker/open-within.js';

function fakeConnection(close: () => Promise<void>) {
  const destroyed: (Error | undefined)[] = [];
  return { conn: { close, connection: { stream: { destroy: (err?: Error) => void destroyed.push(err) } } }, destroyed };
}

describe('closeWithin', () => {
  it('a close the broker never answers: the socket is destroyed with an error after the grace', async () => {
    const { conn, destroyed } = fakeConnection(() => new Promise<void>(() => undefined));
    const t0 = Date.now();
    await closeWithin(conn, 50);
    assert.ok(Date.now() - t0 >= 45, 'waited the grace');
    assert.equal(destroyed.length, 1);
    assert.ok(destroyed[0] instanceof Error, 'destroyed with an error, which amqplib listens for');
  });

  it('a close answered in time (or failed at once) destroys nothing and leaves no timer behind', async () => {
    const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    for (const close of [() => Promise.resolve(), () => Promise.reject(new Error('already closed'))]) {
      const { conn, destroyed } = fakeConnection(close);
      const before = timeouts();
      const t0 = Date.now();
      await closeWithin(conn, 60_000);
      assert.ok(Date.now() - t0 < 1000);
      assert.equal(destroyed.length, 0);
      // A 60-s timer left running would keep a stopping process alive for a minute.
      assert.equal(timeouts(), before, 'its timer is cleared');
    }
  });

  it('a close already under way (amqplib fails the second at once) gets the same grace, then the socket is destroyed', async () => {
    for (const endsInTime of [false, true]) {
      const destroyed: (Error | undefined)[] = [];
      let onClose: (() => void) | null = null;
      const conn = {
        close: () => Promise.reject(new Error('Connection closing')),
        once: (_ev: 'close', fn: () => void) => (onClose = fn),
        connection: { expectSocketClose: false, stream: { destroy: (err?: Error) => void destroyed.push(err) } },
      };
      if (endsInTime) setTimeout(() => onClose?.(), 20);
      const t0 = Date.now();
      await closeWithin(conn, 200);
      const ms = Date.now() - t0;
      if (endsInTime) {
        assert.ok(ms < 150, `ended with the connection (${ms} ms)`);
        assert.equal(destroyed.length, 0);
      } else {
        assert.ok(ms >= 190, `waited the grace (${ms} ms)`);
        assert.equal(destroyed.length, 1);
      }
    }
  });

  it('a connection closed already: nothing to wait for', async () => {
    const destroyed: unknown[] = [];
    const conn = { close: () => new Promise<void>(() => undefined), once: () => undefined, connection: { expectSocketClose: true, stream: { destroy: () => void destroyed.push(1) } } };
    const t0 = Date.now();
    await closeWithin(conn, 5000);
    assert.ok(Date.now() - t0 < 100);
    assert.equal(destroyed.length, 0);
  });

  it('a connection that closes by itself while its close-ok is awaited (amqplib closing it meanwhile) ends the wait, nothing destroyed', async () => {
    const destroyed: unknown[] = [];
    let onClose: (() => void) | null = null;
    const conn = {
      close: () => new Promise<void>(() => undefined),
      once: (_ev: 'close', fn: () => void) => (onClose = fn),
      connection: { expectSocketClose: false, stream: { destroy: () => void destroyed.push(1) } },
    };
    setTimeout(() => onClose?.(), 20);
    const t0 = Date.now();
    await closeWithin(conn, 5000);
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(destroyed.length, 0);
  });
});

describe('settleWithin', () => {
  it('ends with the promise, or at the bound if it never settles; never rejects; nothing to wait for with none', async () => {
    const t0 = performance.now();
    assert.equal(await settleWithin(Promise.resolve(1), 5_000), true);
    assert.equal(await settleWithin(Promise.reject(new Error('x')), 5_000), true);
    assert.equal(await settleWithin(undefined, 5_000), true);
    assert.ok(performance.now() - t0 < 1_000, 'settled ones end at once');
    const t1 = performance.now();
    assert.equal(await settleWithin(new Promise(() => undefined), 50), false, 'says it hit the bound');
    assert.ok(performance.now() - t1 >= 45, 'a hanging one ends at the bound');
    assert.equal(await settleWithin(new Promise(() => undefined), -10), false);
  });
});
