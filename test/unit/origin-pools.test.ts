// Keep-alive connections per origin: an LRU cap and an idle sweep bound them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Client } from '../../src/delivery/undici-core.js';
import { ConnectionWait, OriginPools } from '../../src/delivery/origin-pools.js';

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

/** A connection that was free at once (not a wait). */
function ready(x: Client | ConnectionWait): Client {
  assert.ok(!(x instanceof ConnectionWait), 'a connection at once, not a wait');
  return x as Client;
}

function waiting(x: Client | ConnectionWait): ConnectionWait {
  assert.ok(x instanceof ConnectionWait, 'a wait, not a connection');
  return x;
}

describe('OriginPools', () => {
  it('a connection released broken (it failed to open on its address) goes on only to a waiter routed to that address; one routed elsewhere gets a new one to its own', async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 1, idleMs: 60_000, create });
    const down = ready(pools.acquire('http://m', 'http://10.0.0.1:80'));
    const same = waiting(pools.acquire('http://m', 'http://10.0.0.1:80'));
    const other = waiting(pools.acquire('http://m', 'http://10.0.0.2:80'));
    pools.release('http://m', down, true);
    assert.equal(await same.client, down, 'routed to the same address: the same connection, not a new one per refusal');
    pools.release('http://m', down, true);
    const served = await other.client;
    assert.notEqual(served, down);
    assert.equal(pools.endpointOf(served), 'http://10.0.0.2:80', "the waiter's own endpoint, not the address that failed");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, ['http://10.0.0.1:80']);
    pools.release('http://m', served, true);
    assert.equal(pools.connections, 1, 'with nobody waiting it is kept, for an attempt routed to its address');
    await pools.close();
  });

  it("swap: an attempt moves to another endpoint in its own place (no waiter gets the failed connection); if none can be made, its place goes to the next waiter", async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 1, idleMs: 60_000, create: (e) => {
      if (e === 'http://bad') throw new Error('bad endpoint');
      return create(e);
    } });
    const a = ready(pools.acquire('http://m', 'http://10.0.0.1:80'));
    const w = waiting(pools.acquire('http://m', 'http://10.0.0.2:80'));
    const b = pools.swap('http://m', a, 'http://10.0.0.3:80');
    assert.equal(pools.endpointOf(b), 'http://10.0.0.3:80');
    let served: Client | null = null;
    void w.client.then((c) => (served = c));
    await new Promise((r) => setImmediate(r));
    assert.equal(served, null, 'the waiter still waits: the slot is the moved attempt\'s');
    assert.deepEqual(closed, ['http://10.0.0.1:80']);
    assert.throws(() => pools.swap('http://m', b, 'http://bad'), /bad endpoint/);
    await new Promise((r) => setImmediate(r));
    assert.ok(served !== null && pools.endpointOf(served) === 'http://10.0.0.2:80', 'the waiter got the place, on its own endpoint');
    pools.release('http://m', served!);
    await pools.close();
  });

  it('reuses the connection of an origin and closes the least recently used idle origin past the cap', async () => {
    const { closed, create } = fakes();
    let now = 0;
    const pools = new OriginPools({ maxPools: 2, connectionsPerOrigin: 4, idleMs: 60_000, create, now: () => now });
    const a = ready(pools.acquire('https://a'));
    pools.release('https://a', a);
    assert.equal(pools.acquire('https://a'), a, 'same connection again');
    pools.release('https://a', a);
    now = 1;
    pools.release('https://b', ready(pools.acquire('https://b')));
    now = 2;
    pools.release('https://a', ready(pools.acquire('https://a'))); // a is now the most recent
    pools.acquire('https://c');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, ['https://b'], 'b was the least recently used');
    assert.equal(pools.size, 2);
  });

  it('opens a connection per concurrent attempt up to the cap, then the next waits for whichever is released first', async () => {
    const { create } = fakes();
    let made = 0;
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 2, idleMs: 60_000, create: (o) => (made++, create(o)) });
    const c1 = ready(pools.acquire('https://m'));
    const c2 = ready(pools.acquire('https://m'));
    assert.notEqual(c1, c2, 'a second attempt in flight gets its own connection');
    const third = waiting(pools.acquire('https://m'));
    const fourth = waiting(pools.acquire('https://m'));
    assert.equal(made, 2, 'no more than connectionsPerOrigin');
    pools.release('https://m', c2);
    assert.equal(await third.client, c2, 'the first waiter gets the first connection released, not a busy one');
    pools.release('https://m', c1);
    assert.equal(await fourth.client, c1);
    pools.release('https://m', c2);
    pools.release('https://m', c1);
    pools.release('https://m', c1); // one release too many is ignored
    assert.equal(ready(pools.acquire('https://m')), c1, 'the first idle connection goes first');
  });

  it('counts a handed-on connection once: the origin can be closed after its last attempt', async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 1, connectionsPerOrigin: 1, idleMs: 60_000, create });
    const busy = ready(pools.acquire('https://w'));
    const w = waiting(pools.acquire('https://w'));
    pools.release('https://w', busy); // handed to the waiter: the origin stays busy
    assert.equal(await w.client, busy);
    pools.release('https://other', ready(pools.acquire('https://other')));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, [], 'w still has an attempt under way');
    pools.release('https://w', busy);
    pools.acquire('https://third');
    await new Promise((r) => setImmediate(r));
    assert.ok((closed as string[]).includes('https://w'), `after its last attempt, w is idle and can be evicted (closed: ${closed.join(', ')})`);
  });

  it('a wait given up (its deadline) leaves the queue and is never served; close() serves the waiters before it closes', async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 1, idleMs: 60_000, create });
    const c = ready(pools.acquire('https://s'));
    const gaveUp = waiting(pools.acquire('https://s'));
    const next = waiting(pools.acquire('https://s'));
    assert.equal(gaveUp.cancel(), true);
    assert.equal(gaveUp.cancel(), false, 'only once');
    const closing = pools.close();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed, [], 'an attempt is under way and one waits: nothing closed yet');
    pools.release('https://s', c);
    assert.equal(await next.client, c, 'the waiter is served, not failed, while the pools close');
    pools.release('https://s', c);
    await closing;
    assert.deepEqual(closed, ['https://s']);
    let served = false;
    void gaveUp.client.then(() => (served = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(served, false);
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
    for (const o of ['https://x', 'https://y']) pools.release(o, ready(pools.acquire(o)));
    now = 500;
    pools.release('https://z', ready(pools.acquire('https://z')));
    now = 1200;
    pools.sweep();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(closed.sort(), ['https://x', 'https://y']);
    await pools.close();
    assert.deepEqual(closed.sort(), ['https://x', 'https://y', 'https://z']);
  });

  it('origins on one endpoint share its idle connections, each within its own cap', async () => {
    const { closed, create } = fakes();
    let made = 0;
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 1, idlePerEndpoint: 2, idleMs: 60_000, create: (e) => (made++, create(e)) });
    const E = 'http://10.0.0.1:80';
    const a = ready(pools.acquire('http://a.test', E));
    const b = ready(pools.acquire('http://b.test', E));
    assert.notEqual(a, b, 'both in use at once: two connections');
    const aAgain = waiting(pools.acquire('http://a.test', E));
    pools.release('http://b.test', b);
    assert.equal(made, 2);
    let served = false;
    void aAgain.client.then(() => (served = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(served, false, "b's idle connection does not lift a's cap: a waits for its own");
    pools.release('http://a.test', a);
    assert.equal(await aAgain.client, a);
    pools.release('http://a.test', a);
    const c = ready(pools.acquire('http://c.test', E));
    assert.ok(c === a || c === b, 'a third origin on the endpoint takes an idle connection, not a new one');
    assert.equal(made, 2);
    assert.equal(ready(pools.acquire('http://d.test', 'http://10.0.0.2:80')) !== c, true, 'another address is another endpoint');
    assert.equal(made, 3);
    assert.equal(pools.size, 2);
    pools.release('http://c.test', c);
    const many = [1, 2, 3].map((i) => ready(pools.acquire(`http://m${i}.test`, E)));
    for (const [i, m] of many.entries()) pools.release(`http://m${i + 1}.test`, m);
    await new Promise((r) => setImmediate(r));
    assert.equal(closed.length, 1, `one of three released past idlePerEndpoint (2) is closed (closed: ${closed.join(', ')})`);
    assert.equal(pools.connections, 3, 'two idle on E, one in use on the other address');
  });

  it('close() waits for an attempt reserved while its name is looked up', async () => {
    const { closed, create } = fakes();
    const pools = new OriginPools({ maxPools: 10, connectionsPerOrigin: 1, idleMs: 60_000, create });
    const lookedUp = pools.reserve();
    let done = false;
    const closing = pools.close().then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'the reserved attempt is still to acquire');
    const c = ready(pools.acquire('http://late.test', 'http://10.0.0.9:80'));
    lookedUp();
    lookedUp(); // once only
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'now its request is under way');
    pools.release('http://late.test', c);
    await closing;
    assert.deepEqual(closed, ['http://10.0.0.9:80'], 'and its connection is closed with the rest');
  });

  it('an endpoint whose Client cannot be made leaves nothing counted', async () => {
    const { create } = fakes();
    const pools = new OriginPools({
      maxPools: 10,
      connectionsPerOrigin: 1,
      idleMs: 60_000,
      create: (e) => {
        if (e.includes('%')) throw new TypeError('Invalid URL');
        return create(e);
      },
    });
    assert.throws(() => pools.acquire('http://z.test', 'http://[fe80::1%eth0]:80'), /Invalid URL/);
    assert.throws(() => pools.acquire('http://z.test', 'http://[fe80::1%eth0]:80'), /Invalid URL/);
    assert.equal(pools.size, 0, 'no endpoint kept for it');
    const c = ready(pools.acquire('http://z.test', 'http://10.0.0.3:80'));
    pools.release('http://z.test', c);
    await pools.close();
  });
});
