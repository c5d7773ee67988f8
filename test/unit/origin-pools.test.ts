// Keep-alive connections per origin: an LRU cap and an idle sweep bound them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client } from '../../src/delivery/undici-core.js';
import { OriginPools } from '../../src/delivery/origin-pools.js';

function fakes() {
  const closed: string[] = [];
  const create = (origin: string): Client =>
    ({
      origin,
      close: async () => void closed.push(origin),
      destroy: async () => void closed.push(origin),
    }) as unknown as Client;
  return { closed, create };
}

describe('OriginPools', () => {
  it('reuses the connection of an origin and closes the least recently used idle origin past the cap', async () => {
    const { closed, create } = fakes();
    let now = 0;
    const pools = new OriginPools({ maxPools: 2, connectionsPerOrigin: 4, idleMs: 60_000, create, now: () => now });
    const a = pools.acquire('https://a');
    pools.release('https://a', a);
    assert.equal(pools.acquire('https://a'), a, 'same connection again');
    pools.release('https://a', a);
    now = 1;
    pools.release('https://b', pools.acquire('https://b'));
    now = 2;
    pools.release('https://a', pools.acquire('https://a')); // a is now the most recent
    pools.acquire('https://c');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, ['https://b'], 'b was the least recently used');
    assert.equal(pools.size, 2);
  });

  it('opens a connection per concurrent attempt up to the cap, then shares the least busy, and reuses the first idle one', () => {
    const { create } = fakes();
    let made = 0;
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 2, idleMs: 60_000, create: (o) => (made++, create(o)) });
    const c1 = pools.acquire('https://m');
    const c2 = pools.acquire('https://m');
    assert.notEqual(c1, c2, 'a second attempt in flight gets its own connection');
    const c3 = pools.acquire('https://m');
    assert.equal(made, 2, 'no more than connectionsPerOrigin');
    assert.ok(c3 === c1 || c3 === c2);
    pools.release('https://m', c2);
    assert.equal(pools.acquire('https://m'), c2, 'c2 is idle again: the least busy');
    pools.release('https://m', c1);
    pools.release('https://m', c3);
    pools.release('https://m', c2);
    pools.release('https://m', c1); // one release too many is ignored
    assert.equal(pools.acquire('https://m'), c1, 'the first idle connection goes first');
  });

  it('never closes an origin with attempts under way, even past the cap', async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 1, connectionsPerOrigin: 4, idleMs: 60_000, create });
    pools.acquire('https://busy');
    pools.acquire('https://other');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, []);
    assert.equal(pools.size, 2, 'over the cap while busy, rather than cut a request');
  });

  it('sweeps origins idle longer than idleMs, and close() closes the rest', async () => {
    const { closed, create } = fakes();
    let now = 0;
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 4, idleMs: 1000, create, now: () => now });
    for (const o of ['https://x', 'https://y']) pools.release(o, pools.acquire(o));
    now = 500;
    pools.release('https://z', pools.acquire('https://z'));
    now = 1200;
    pools.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed.sort(), ['https://x', 'https://y']);
    await pools.close();
    assert.deepEqual(closed.sort(), ['https://x', 'https://y', 'https://z']);
  });
});
