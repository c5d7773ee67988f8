// Keep-alive pools per origin: an LRU cap and an idle sweep bound them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pool } from 'undici';
import { OriginPools } from '../../src/delivery/origin-pools.js';

function fakes() {
  const closed: string[] = [];
  const create = (origin: string): Pool => ({ close: async () => void closed.push(origin) }) as unknown as Pool;
  return { closed, create };
}

describe('OriginPools', () => {
  it('reuses the pool of an origin and closes the least recently used idle one past the cap', async () => {
    const { closed, create } = fakes();
    let now = 0;
    const pools = new OriginPools({ maxPools: 2, idleMs: 60_000, create, now: () => now });
    const a = pools.acquire('https://a');
    pools.release('https://a');
    assert.equal(pools.acquire('https://a'), a, 'same pool again');
    pools.release('https://a');
    now = 1;
    pools.acquire('https://b');
    pools.release('https://b');
    now = 2;
    pools.acquire('https://a'); // a is now the most recent
    pools.release('https://a');
    pools.acquire('https://c');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, ['https://b'], 'b was the least recently used');
    assert.equal(pools.size, 2);
  });

  it('never closes a pool with attempts under way, even past the cap', async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 1, idleMs: 60_000, create });
    pools.acquire('https://busy');
    pools.acquire('https://other');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, []);
    assert.equal(pools.size, 2, 'over the cap while busy, rather than cut a request');
  });

  it('sweeps pools idle longer than idleMs, and close() closes the rest', async () => {
    const { closed, create } = fakes();
    let now = 0;
    const pools = new OriginPools({ maxPools: 10, idleMs: 1000, create, now: () => now });
    for (const o of ['https://x', 'https://y']) {
      pools.acquire(o);
      pools.release(o);
    }
    now = 500;
    pools.acquire('https://z');
    pools.release('https://z');
    now = 1200;
    pools.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed.sort(), ['https://x', 'https://y']);
    await pools.close();
    assert.deepEqual(closed.sort(), ['https://x', 'https://y', 'https://z']);
  });
});
