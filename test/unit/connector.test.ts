// The socket side of a delivery: DNS off the thread pool with a TTL cache,
// the guard on the addresses actually connected to, never notifyd itself.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DnsStub } from '../../bench/dns-stub.js';
import { loadConfig, type DeliveryConfig } from '../../src/core/config.js';
import { createAddressGuard } from '../../src/delivery/address-guard.js';
import { SelfAddresses } from '../../src/delivery/connector.js';
import { DnsCache, DnsError, parseHosts, type DnsQueries } from '../../src/delivery/dns-cache.js';
import { HttpDeliverer } from '../../src/delivery/deliverer.js';

describe('DnsCache', () => {
  function fake(answers: Record<string, { v4?: string[]; v6?: string[]; ttl?: number; fail?: string }>): DnsQueries & { calls: string[] } {
    const calls: string[] = [];
    const q = (family: 'v4' | 'v6') => async (name: string) => {
      calls.push(`${family}:${name}`);
      const a = answers[name];
      if (!a || a.fail) throw Object.assign(new Error('x'), { code: a?.fail ?? 'ENOTFOUND' });
      const list = a[family];
      if (!list) throw Object.assign(new Error('x'), { code: 'ENODATA' });
      return list.map((address) => ({ address, ttl: a.ttl ?? 60 }));
    };
    return { calls, resolve4: q('v4'), resolve6: q('v6') };
  }

  it('caches answers for their TTL (clamped), IPv4 when there is one, one query per name at a time', async () => {
    let now = 1_000_000;
    const q = fake({ 'a.test': { v4: ['203.0.113.1'], v6: ['2001:db8::1'], ttl: 30 }, 'six.test': { v6: ['2001:db8::6'], ttl: 30 } });
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 10, hostsFile: null, queries: q, now: () => now });
    const [x, y] = await Promise.all([c.resolve('a.test'), c.resolve('A.TEST')]);
    assert.deepEqual(x.map((a) => a.address), ['203.0.113.1']);
    assert.equal(x, y, 'concurrent lookups share one query');
    assert.deepEqual(q.calls, ['v4:a.test'], 'no AAAA query for a name with an A record');
    now += 29_000;
    await c.resolve('a.test');
    assert.equal(q.calls.length, 1, 'cached within the TTL');
    now += 2_000;
    await c.resolve('a.test');
    assert.equal(q.calls.length, 2, 'asked again after it');
    assert.deepEqual((await c.resolve('six.test')).map((a) => a.address), ['2001:db8::6'], 'an IPv6-only name is found through AAAA');
    assert.deepEqual(q.calls.slice(2), ['v4:six.test', 'v6:six.test']);
  });

  it('keeps the last answer past its TTL for peekStale (usable at once after a timeout or a server failure, or a lookup late by lateMs; none after NXDOMAIN), for at most maxStaleMs', async () => {
    let now = 0;
    const answers: Record<string, { v4?: string[]; ttl?: number; fail?: string }> = { 'm.test': { v4: ['203.0.113.7'], ttl: 10 } };
    const q = fake(answers);
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 10, hostsFile: null, negativeTtlMs: 1000, maxStaleMs: 60_000, queries: q, now: () => now });
    const first = await c.resolve('m.test');
    assert.equal(c.peekStale('m.test', 1000), undefined, 'fresh: peek, not peekStale');
    assert.equal(c.peek('m.test'), first);
    now += 10_001;
    assert.equal(c.peek('m.test'), undefined, 'past its TTL');
    assert.deepEqual(c.peekStale('m.test', 1000), { answer: first, usable: false }, 'past its TTL, nothing asked or failed yet');
    // A second name whose lookup past its TTL waits until it is told to answer.
    let answer: (() => void) | null = null;
    const slow: DnsQueries = {
      resolve4: (name) =>
        answer === null && name === 'w.test' && now > 1_000_000
          ? new Promise((r) => (answer = () => r([{ address: '203.0.113.8', ttl: 10 }])))
          : Promise.resolve([{ address: '203.0.113.9', ttl: 10 }]),
      resolve6: q.resolve6,
    };
    const saved = now;
    now = 0;
    const c2 = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 10, hostsFile: null, queries: slow, now: () => now });
    const w = await c2.resolve('w.test');
    now = 1_000_001;
    const asked = c2.resolve('w.test');
    assert.deepEqual(c2.peekStale('w.test', 1000), { answer: w, usable: false }, 'asked again just now');
    now += 1000;
    assert.deepEqual(c2.peekStale('w.test', 1000), { answer: w, usable: true }, 'the new answer is a second late');
    await new Promise((r) => setImmediate(r)); // the query goes out after the hosts file is looked at
    answer!();
    await asked;
    assert.equal(c2.peekStale('w.test', 1000), undefined, 'a fresh answer is in');
    now = saved;
    answers['m.test'] = { fail: 'ETIMEOUT' };
    await assert.rejects(c.resolve('m.test'), (e: unknown) => e instanceof DnsError && e.code === 'DNS_TIMEOUT');
    assert.deepEqual(c.peekStale('m.test', 1000), { answer: first, usable: true }, 'kept through a timeout');
    now += 1001;
    answers['m.test'] = { fail: 'ESERVFAIL' };
    await assert.rejects(c.resolve('m.test'), (e: unknown) => e instanceof DnsError && e.code === 'DNS_FAILURE');
    assert.deepEqual(c.peekStale('m.test', 1000), { answer: first, usable: true }, 'and through a server failure after it');
    now = 10_000 + 60_001;
    assert.equal(c.peekStale('m.test', 1000), undefined, 'not beyond maxStaleMs past its TTL');
    now = 20_000;
    answers['m.test'] = { fail: 'ENOTFOUND' };
    await assert.rejects(c.resolve('m.test'), (e: unknown) => e instanceof DnsError && e.code === 'DNS_NOTFOUND');
    assert.equal(c.peekStale('m.test', 1000), undefined, 'a name that no longer exists is not used');
  });

  it('resolveOrLast: the new answer when it comes in time; the last one past its TTL once the lookup is lateMs old or has failed (not after NXDOMAIN)', async () => {
    let now = 0;
    const answers: Record<string, { v4?: string[]; ttl?: number; fail?: string }> = { 'r.test': { v4: ['203.0.113.11'], ttl: 10 } };
    const q = fake(answers);
    let release: (() => void) | null = null;
    const queries: DnsQueries = {
      resolve4: (name) => (answers[name]?.fail === 'hang' ? new Promise((r) => (release = () => r([{ address: '203.0.113.12', ttl: 10 }]))) : q.resolve4(name)),
      resolve6: q.resolve6,
    };
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 10, hostsFile: null, negativeTtlMs: 1000, queries, now: () => now });
    await assert.rejects(c.resolveOrLast('none.test', 50), (e: unknown) => e instanceof DnsError && e.code === 'DNS_NOTFOUND', 'nothing kept: the error');
    const first = await c.resolveOrLast('r.test', 50);
    assert.equal(await c.resolveOrLast('r.test', 50), first, 'fresh: the cached answer');
    now += 10_001;
    answers['r.test'] = { fail: 'hang' };
    const started = Date.now();
    assert.equal(await c.resolveOrLast('r.test', 150), first, 'no new answer 150 ms on: the last one');
    assert.ok(Date.now() - started >= 140, 'after waiting lateMs for the new one');
    now += 150;
    const at = Date.now();
    assert.equal(await c.resolveOrLast('r.test', 150), first, 'the lookup asked 150 ms ago is late: the last answer at once');
    assert.ok(Date.now() - at < 100);
    release!();
    await new Promise((r) => setImmediate(r));
    const second = await c.resolveOrLast('r.test', 150);
    assert.deepEqual(second.map((a) => a.address), ['203.0.113.12'], 'the new answer, once it came');
    now += 10_001;
    answers['r.test'] = { fail: 'ESERVFAIL' };
    const failedAt = Date.now();
    assert.equal(await c.resolveOrLast('r.test', 5_000), second, 'the servers fail: the last answer');
    assert.ok(Date.now() - failedAt < 1000, 'without waiting lateMs');
    now += 1_001;
    answers['r.test'] = { v4: ['203.0.113.13'], ttl: 10 };
    await c.resolve('r.test');
    now += 10_001;
    answers['r.test'] = { fail: 'ENOTFOUND' };
    await assert.rejects(c.resolveOrLast('r.test', 5_000), (e: unknown) => e instanceof DnsError && e.code === 'DNS_NOTFOUND', 'a name that no longer exists: no last answer');
  });

  it('remembers failures briefly, with stable codes', async () => {
    let now = 0;
    const q = fake({ 'slow.test': { fail: 'ETIMEOUT' } });
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 10, hostsFile: null, negativeTtlMs: 1000, queries: q, now: () => now });
    await assert.rejects(c.resolve('slow.test'), (e: unknown) => e instanceof DnsError && e.code === 'DNS_TIMEOUT');
    await assert.rejects(c.resolve('nx.test'), (e: unknown) => e instanceof DnsError && e.code === 'DNS_NOTFOUND');
    const calls = q.calls.length;
    await assert.rejects(c.resolve('slow.test'));
    assert.equal(q.calls.length, calls, 'negative answer cached');
    now += 1001;
    await assert.rejects(c.resolve('slow.test'));
    assert.deepEqual(q.calls.slice(calls), ['v4:slow.test'], 'asked again after the negative TTL; a timed-out A is not followed by AAAA');
  });

  it('keeps at most maxEntries names', async () => {
    const answers: Record<string, { v4: string[] }> = {};
    for (let i = 0; i < 50; i++) answers[`n${i}.test`] = { v4: [`203.0.113.${i}`] };
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 8, hostsFile: null, queries: fake(answers) });
    for (let i = 0; i < 50; i++) await c.resolve(`n${i}.test`);
    assert.equal(c.size, 8);
  });

  it('reads the hosts file first and answers localhost itself', async () => {
    assert.deepEqual(parseHosts('127.0.0.1 localhost box # c\n::1 localhost\n# x\n10.0.0.5 db.internal').get('localhost'), [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ]);
    const q = fake({});
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 8, hostsFile: null, queries: q });
    assert.deepEqual((await c.resolve('localhost')).map((a) => a.address), ['127.0.0.1', '::1']);
    assert.equal(q.calls.length, 0);
  });

  it('a hosts file gone for a moment is read again when it is back, even with the same mtime (an atomic replace)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'notifyd-hosts-'));
    const file = join(dir, 'hosts');
    try {
      // A whole second, which the file system keeps exactly, so the second write can have the very same mtime.
      const mtime = 1_700_000_000;
      writeFileSync(file, '10.0.0.7 pay.internal\n');
      utimesSync(file, mtime, mtime);
      let now = 1_000_000;
      const q = fake({ 'pay.internal': { v4: ['203.0.113.9'], ttl: 1 } });
      const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 8, hostsFile: file, minTtlMs: 1, maxTtlMs: 1, queries: q, now: () => now });
      const addr = async (): Promise<string> => (await c.resolve('pay.internal'))[0]!.address;
      assert.equal(await addr(), '10.0.0.7');
      rmSync(file);
      now += 6_000;
      assert.equal(await addr(), '203.0.113.9', 'gone: DNS answers');
      writeFileSync(file, '10.0.0.7 pay.internal\n');
      utimesSync(file, mtime, mtime);
      now += 6_000;
      assert.equal(await addr(), '10.0.0.7', 'back with the same mtime: read again');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lookups made while the hosts file is first read wait for it (a burst of names at start is answered from it, not DNS)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'notifyd-hosts-'));
    const file = join(dir, 'hosts');
    try {
      writeFileSync(file, '10.0.0.9 pinned.test\n');
      const q = fake({ 'other.test': { v4: ['203.0.113.1'] }, 'pinned.test': { v4: ['203.0.113.2'] } });
      const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 8, hostsFile: file, queries: q });
      const [other, pinned, missing] = await Promise.allSettled([c.resolve('other.test'), c.resolve('pinned.test'), c.resolve('only-in-dns.test')]);
      assert.equal(other.status === 'fulfilled' && other.value[0]!.address, '203.0.113.1');
      assert.equal(pinned.status === 'fulfilled' && pinned.value[0]!.address, '10.0.0.9', 'from the file, not DNS');
      assert.equal(missing.status, 'rejected');
      assert.ok(!q.calls.includes('v4:pinned.test'), q.calls.join());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a name with no A record whose AAAA query times out fails with DNS_TIMEOUT and keeps its last answer (not 'no address')", async () => {
    let now = 0;
    const answers: Record<string, { v6?: string[]; ttl?: number; fail?: string }> = { 'six.test': { v6: ['2001:db8::6'], ttl: 10 } };
    const base = fake(answers);
    let v6Fails = false;
    const q: DnsQueries = {
      resolve4: base.resolve4,
      resolve6: async (name) => {
        if (v6Fails) throw Object.assign(new Error('x'), { code: 'ETIMEOUT' });
        return base.resolve6(name);
      },
    };
    const c = new DnsCache({ servers: [], timeoutMs: 100, maxEntries: 10, hostsFile: null, negativeTtlMs: 1000, maxStaleMs: 60_000, queries: q, now: () => now });
    const first = await c.resolve('six.test');
    now += 10_001;
    v6Fails = true;
    await assert.rejects(c.resolve('six.test'), (err: { code?: string }) => err.code === 'DNS_TIMEOUT');
    assert.deepEqual(c.peekStale('six.test', 1000), { answer: first, usable: true }, 'the last answer usable after the timeout');
  });

  it("talks to the configured server with c-ares: a name that never answers does not hold up another's", async () => {
    const stub = new DnsStub();
    await stub.start();
    stub.set('good.test', { a: ['127.0.0.1'], ttl: 60 });
    stub.set('hang.test', 'blackhole');
    const c = new DnsCache({ servers: [stub.address], timeoutMs: 300, maxEntries: 8, hostsFile: null });
    const hanging = Array.from({ length: 20 }, () => c.resolve(`hang.test`).catch((e: unknown) => e));
    const started = Date.now();
    const good = await c.resolve('good.test');
    assert.deepEqual(good.map((a) => a.address), ['127.0.0.1']);
    assert.ok(Date.now() - started < 250, `good.test answered while hang.test hung (${Date.now() - started} ms)`);
    const errs = await Promise.all(hanging);
    assert.ok(errs.every((e) => e instanceof DnsError && e.code === 'DNS_TIMEOUT'));
    await stub.close();
  });
});

describe('guarded connector (through HttpDeliverer)', () => {
  let server: http.Server;
  let port: number;
  let hits = 0;
  const hosts: string[] = [];
  let connections = 0;
  const stub = new DnsStub();
  const cfg: DeliveryConfig = {
    ...loadConfig({ env: {} }).delivery,
    timeoutMs: 1000, connectTimeoutMs: 500, headersTimeoutMs: 1000, maxResponseBytes: 1024, concurrency: 8, connectionsPerOrigin: 2,
    deadOnStatus: [], success: { status: '2xx' }, allowPrivateNetworks: false, allowCidrs: ['127.0.0.0/8'], dnsServers: [], dnsTimeoutMs: 150,
  };
  const post = (url: string) => ({ url, method: 'POST' as const, headers: {}, body: 'x' });

  before(async () => {
    server = http.createServer((req, res) => {
      hits++;
      hosts.push(req.headers.host ?? '');
      req.resume();
      if (req.url === '/close') res.setHeader('connection', 'close');
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    server.on('connection', () => connections++);
    await stub.start();
    stub.set('*.shared.test', { a: ['127.0.0.1'] });
    stub.set('mixed.test', { a: ['10.1.2.3', '127.0.0.1'] });
    stub.set('private.test', { a: ['10.1.2.3'] });
    stub.set('hang.test', 'blackhole');
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await stub.close();
  });

  const deliverer = (self = new SelfAddresses()) => new HttpDeliverer({ ...cfg, dnsServers: [stub.address] }, createAddressGuard(cfg), self);

  it('a mixed answer connects only to the allowed address; none allowed is DNS_BLOCKED (retried), not DESTINATION_BLOCKED', async () => {
    const d = deliverer();
    for (let i = 0; i < 4; i++) {
      const r = await d.attempt(post(`http://mixed.test:${port}/`));
      assert.ok(r.kind === 'response' && r.status === 200, JSON.stringify(r));
    }
    const blocked = await d.attempt(post(`http://private.test:${port}/`));
    assert.ok(blocked.kind === 'error' && blocked.code === 'DNS_BLOCKED', JSON.stringify(blocked));
    await d.close();
  });

  it("never connects to notifyd's own ports, even with loopback allowed", async () => {
    const self = new SelfAddresses();
    self.setPorts([port]);
    const d = deliverer(self);
    const before = hits;
    const literal = await d.attempt(post(`http://127.0.0.1:${port}/admin/dead/redrive?force=1`));
    assert.ok(literal.kind === 'error' && literal.code === 'DESTINATION_BLOCKED', JSON.stringify(literal));
    const named = await d.attempt(post(`http://localhost:${port}/admin/dead/redrive?force=1`));
    assert.ok(named.kind === 'error' && named.code === 'DNS_BLOCKED', JSON.stringify(named));
    assert.equal(hits, before, 'nothing reached the port');
    self.setPorts([]);
    const ok = await d.attempt(post(`http://127.0.0.1:${port}/`));
    assert.ok(ok.kind === 'response', 'the same port is fine once it is not ours');
    await d.close();
  });

  it("knows this host's own addresses however they are written: IPv4-mapped IPv6 as the URL parser writes it (hex), upper case", (t) => {
    const own = Object.values(networkInterfaces()).flatMap((l) => l ?? []).find((i) => !i.internal && i.family === 'IPv4');
    if (!own) return t.skip('no non-loopback IPv4 address on this machine');
    const self = new SelfAddresses();
    self.setPorts([9464]);
    const mapped = new URL(`http://[::ffff:${own.address}]/`).hostname.slice(1, -1);
    assert.match(mapped, /^::ffff:[0-9a-f]+:[0-9a-f]+$/, 'the parser writes it in hex');
    assert.equal(self.isSelf(own.address, 9464), true);
    assert.equal(self.isSelf(mapped, 9464), true, mapped);
    assert.equal(self.isSelf(`::FFFF:${own.address}`, 9464), true);
    assert.equal(self.isSelf(mapped, 9465), false, 'another port');
    assert.equal(self.isSelf('::ffff:c000:263', 9464), own.address === '192.0.2.99', '::ffff:192.0.2.99 is another address (unless it is ours)');
  });

  it('a name whose DNS never answers fails with DNS_TIMEOUT within the DNS timeout', async () => {
    const d = deliverer();
    const started = Date.now();
    const r = await d.attempt(post(`http://hang.test:${port}/`));
    assert.ok(r.kind === 'error' && r.code === 'DNS_TIMEOUT', JSON.stringify(r));
    assert.ok(Date.now() - started < 1000);
    await d.close();
  });
  it('http merchants whose names share an address share its connections; each request names its own Host', async () => {
    const d = deliverer();
    hosts.length = 0;
    const before = connections;
    for (const name of ['a', 'b', 'c', 'a']) {
      const r = await d.attempt(post(`http://${name}.shared.test:${port}/`));
      assert.ok(r.kind === 'response' && r.status === 200, JSON.stringify(r));
    }
    assert.deepEqual(hosts, ['a', 'b', 'c', 'a'].map((n) => `${n}.shared.test:${port}`));
    assert.equal(connections - before, 1, 'one connection served the three names one after another');
    await d.close();
  });

  it("the whole-response deadline covers the name's lookup", async () => {
    const d = new HttpDeliverer({ ...cfg, dnsServers: [stub.address], dnsTimeoutMs: 1000, timeoutMs: 200 }, createAddressGuard(cfg), new SelfAddresses());
    const started = Date.now();
    const r = await d.attempt(post(`http://hang.test:${port}/`));
    const took = Date.now() - started;
    assert.ok(r.kind === 'error' && r.code === 'TIMEOUT', JSON.stringify(r));
    assert.ok(took < 1000, `settled at the 200-ms deadline, not after the DNS timeouts (took ${took} ms)`);
    await d.close();
  });
  it('an http name that resolves to IPv6 only is reached on it (the shared endpoint is written [addr]:port)', async (t) => {
    const v6 = http.createServer((req, res) => {
      req.resume();
      res.end(`v6 ${req.headers.host}`);
    });
    try {
      await new Promise<void>((resolve, reject) => v6.once('error', reject).listen(0, '::1', resolve));
    } catch {
      return t.skip('no IPv6 loopback here');
    }
    const v6port = (v6.address() as AddressInfo).port;
    stub.set('six.test', { aaaa: ['::1'] });
    const allow = { ...cfg, allowCidrs: ['127.0.0.0/8', '::1/128'] };
    const d = new HttpDeliverer({ ...allow, dnsServers: [stub.address] }, createAddressGuard(allow), new SelfAddresses());
    const r = await d.attempt(post(`http://six.test:${v6port}/`));
    assert.ok(r.kind === 'response' && r.status === 200 && r.body === `v6 six.test:${v6port}`, JSON.stringify(r));
    await d.close();
    v6.closeAllConnections();
    v6.close();
  });
  it('with shareConnections off, every http name has connections of its own', async () => {
    const off = { ...cfg, perOrigin: { ...cfg.perOrigin, shareConnections: false } };
    const d = new HttpDeliverer({ ...off, dnsServers: [stub.address] }, createAddressGuard(off), new SelfAddresses());
    hosts.length = 0;
    const before = connections;
    for (const name of ['d', 'e', 'f']) {
      const r = await d.attempt(post(`http://${name}.shared.test:${port}/`));
      assert.ok(r.kind === 'response' && r.status === 200, JSON.stringify(r));
    }
    assert.deepEqual(hosts, ['d', 'e', 'f'].map((n) => `${n}.shared.test:${port}`));
    assert.equal(connections - before, 3);
    await d.close();
  });

  it("a name looked up when its connection opens (https's way, or sharing off): the deadline covers the lookup, and the request timed out is never sent", async () => {
    let asked = 0;
    const queries: DnsQueries = {
      resolve4: () => {
        asked++;
        // An answer 1.5 s late, long past the attempts' 200-ms deadline.
        return new Promise((r) => setTimeout(() => r([{ address: '127.0.0.1', ttl: 60 }]), 1500));
      },
      resolve6: async () => {
        throw Object.assign(new Error('x'), { code: 'ENODATA' });
      },
    };
    const dns = new DnsCache({ servers: [], timeoutMs: 5000, maxEntries: 100, hostsFile: null, queries });
    const off = { ...cfg, timeoutMs: 200, connectionsPerOrigin: 1, perOrigin: { ...cfg.perOrigin, shareConnections: false } };
    const d = new HttpDeliverer(off, createAddressGuard(off), new SelfAddresses(), dns);
    const before = hits;
    const connected = connections;
    const url = `http://late.test:${port}/`;
    const started = Date.now();
    const [a, b] = await Promise.all([d.attempt(post(url)), d.attempt(post(url))]);
    const took = Date.now() - started;
    for (const r of [a, b]) assert.ok(r.kind === 'error' && r.code === 'TIMEOUT' && r.sentAt === undefined, JSON.stringify(r));
    assert.ok(took < 800, `both settled at the 200-ms deadline, not when DNS answered (took ${took} ms)`);
    // The connection stays the origin's until undici lets go of the timed-out request: a third attempt waits for it, it does not queue on it.
    const third = await d.attempt(post(url));
    assert.ok(third.kind === 'error' && third.code === 'TIMEOUT' && third.sentAt === undefined, JSON.stringify(third));
    assert.ok(Date.now() - started < 1400, 'the third too settled at its deadline, before the answer');
    assert.equal(asked, 1, 'one lookup, for the one connection the origin may open');
    assert.equal(connections, connected, 'no connection yet');
    await new Promise((r) => setTimeout(r, 1600 - (Date.now() - started)));
    const ok = await d.attempt(post(url));
    assert.ok(ok.kind === 'response' && ok.status === 200, JSON.stringify(ok));
    assert.equal(hits - before, 1, 'only the attempt made after the deadlines reached the merchant');
    assert.equal(connections - connected, 2, "the timed-out request's (dropped by its abort) and the one that delivered: none for the third, which never queued on it");
    await d.close();
  });

  it('past its TTL, a name looked up when its connection opens goes by its last answer while DNS fails or is late, not after NXDOMAIN', async () => {
    let now = 1_000_000;
    let release: (() => void) | null = null;
    const answers: Record<string, string[] | 'hang' | 'ESERVFAIL' | 'ENOTFOUND'> = { 'own.test': ['127.0.0.1'], 'fail.test': ['127.0.0.1'] };
    const queries: DnsQueries = {
      resolve4: async (name) => {
        const a = answers[name];
        if (a === 'hang') return new Promise((r) => (release = () => r([{ address: '127.0.0.1', ttl: 60 }])));
        if (a === undefined || typeof a === 'string') throw Object.assign(new Error('x'), { code: a ?? 'ENOTFOUND' });
        return a.map((address) => ({ address, ttl: 60 }));
      },
      resolve6: async () => {
        throw Object.assign(new Error('x'), { code: 'ENODATA' });
      },
    };
    const dns = new DnsCache({ servers: [], timeoutMs: 1000, maxEntries: 100, hostsFile: null, negativeTtlMs: 1000, queries, now: () => now });
    const off = { ...cfg, timeoutMs: 3000, perOrigin: { ...cfg.perOrigin, shareConnections: false } };
    const d = new HttpDeliverer(off, createAddressGuard(off), new SelfAddresses(), dns);
    // `/close` answers with Connection: close, so each attempt opens a connection and looks its name up.
    const attempt = async (name: string) => d.attempt(post(`http://${name}:${port}/close`));
    for (const name of ['own.test', 'fail.test']) {
      const r = await attempt(name);
      assert.ok(r.kind === 'response' && r.status === 200, JSON.stringify(r));
    }
    now += 61_000;
    answers['fail.test'] = 'ESERVFAIL';
    const failed = await attempt('fail.test');
    assert.ok(failed.kind === 'response' && failed.status === 200, `the servers fail: the last answer, not DNS_FAILURE: ${JSON.stringify(failed)}`);
    answers['own.test'] = 'hang';
    const started = Date.now();
    const late = await attempt('own.test');
    const took = Date.now() - started;
    assert.ok(late.kind === 'response' && late.status === 200, JSON.stringify(late));
    assert.ok(took >= 900 && took < 2500, `after a second's wait for the new answer (took ${took} ms)`);
    release!();
    await new Promise((r) => setImmediate(r));
    now += 61_000;
    answers['own.test'] = 'ENOTFOUND';
    const gone = await attempt('own.test');
    assert.ok(gone.kind === 'error' && gone.code === 'DNS_NOTFOUND', JSON.stringify(gone));
    await d.close();
  });

  it("a reload's deliverer keeps the last one's DNS answers while the resolver settings are the same", async () => {
    let now = 1_000_000;
    let failing = false;
    const queries: DnsQueries = {
      resolve4: async () => {
        if (failing) throw Object.assign(new Error('x'), { code: 'ESERVFAIL' });
        return [{ address: '127.0.0.1', ttl: 60 }];
      },
      resolve6: async () => {
        throw Object.assign(new Error('x'), { code: 'ENODATA' });
      },
    };
    const dns = new DnsCache({ servers: [], timeoutMs: 1000, maxEntries: 100, hostsFile: null, queries, now: () => now });
    const d1 = new HttpDeliverer(cfg, createAddressGuard(cfg), new SelfAddresses(), dns);
    const ok = await d1.attempt(post(`http://kept.test:${port}/`));
    assert.ok(ok.kind === 'response' && ok.status === 200, JSON.stringify(ok));
    const next = { ...cfg, timeoutMs: 2000, allowCidrs: ['127.0.0.0/8', '192.0.2.0/24'] };
    assert.equal(d1.dnsCacheFor(next), dns, 'other timeouts and allowances: the same resolver');
    assert.equal(d1.dnsCacheFor({ ...next, dnsServers: ['192.0.2.53'] }), undefined, 'other servers: a new cache');
    assert.equal(d1.dnsCacheFor({ ...next, dnsTimeoutMs: 999 }), undefined);
    assert.equal(d1.dnsCacheFor({ ...next, perOrigin: { ...next.perOrigin, maxOrigins: 5000 } }), undefined, 'a cache sized for more origins');
    const d2 = new HttpDeliverer(next, createAddressGuard(next), new SelfAddresses(), d1.dnsCacheFor(next));
    await d1.close();
    failing = true;
    now += 61_000;
    const after = await d2.attempt(post(`http://kept.test:${port}/`));
    assert.ok(after.kind === 'response' && after.status === 200, `DNS fails after the reload: the answer from before it: ${JSON.stringify(after)}`);
    await d2.close();
  });

  it('past its TTL a shared http name goes by its new answer; if DNS stops answering, by its last one once the new one is a second late, then at once', async () => {
    let now = 1_000_000;
    const answers: Record<string, string[] | 'hang'> = { 'flip.test': ['127.0.0.1'], 'move.test': ['127.0.0.1'] };
    const queries: DnsQueries = {
      resolve4: async (name) => {
        const a = answers[name];
        if (a === 'hang') return new Promise(() => undefined);
        if (!a) throw Object.assign(new Error('x'), { code: 'ENOTFOUND' });
        return a.map((address) => ({ address, ttl: 60 }));
      },
      resolve6: async () => {
        throw Object.assign(new Error('x'), { code: 'ENODATA' });
      },
    };
    const dns = new DnsCache({ servers: [], timeoutMs: 1000, maxEntries: 100, hostsFile: null, queries, now: () => now });
    const slow = { ...cfg, timeoutMs: 3000 };
    const d = new HttpDeliverer(slow, createAddressGuard(slow), new SelfAddresses(), dns);
    for (const name of ['flip', 'move']) {
      const ok = await d.attempt(post(`http://${name}.test:${port}/`));
      assert.ok(ok.kind === 'response' && ok.status === 200, JSON.stringify(ok));
    }
    answers['flip.test'] = 'hang';
    answers['move.test'] = ['10.1.2.3'];
    now += 61_000;
    const moved = await d.attempt(post(`http://move.test:${port}/`));
    assert.ok(moved.kind === 'error' && moved.code === 'DNS_BLOCKED', `the new answer (a refused address), not the last one: ${JSON.stringify(moved)}`);
    let started = Date.now();
    const stale = await d.attempt(post(`http://flip.test:${port}/`));
    let took = Date.now() - started;
    assert.ok(stale.kind === 'response' && stale.status === 200, `the last answer, as a kept-open connection would: ${JSON.stringify(stale)}`);
    assert.ok(took >= 900 && took < 1900, `after waiting a second for the new one, which never comes (took ${took} ms)`);
    now += 1000;
    started = Date.now();
    const next = await d.attempt(post(`http://flip.test:${port}/`));
    took = Date.now() - started;
    assert.ok(next.kind === 'response' && next.status === 200, JSON.stringify(next));
    assert.ok(took < 500, `the lookup asked a second ago is late: the last answer at once (took ${took} ms)`);
    await d.close();
  });

  // 127.0.0.2 and 127.0.0.3 are loopback addresses nothing listens on here: a connect to them is refused.
  for (const sharing of [true, false]) {
    it(`a name with one of its two addresses down is delivered on the other, every attempt (shareConnections ${sharing ? 'on' : 'off'})`, async () => {
      const c = { ...cfg, perOrigin: { ...cfg.perOrigin, shareConnections: sharing } };
      const d = new HttpDeliverer({ ...c, dnsServers: [stub.address] }, createAddressGuard(c), new SelfAddresses());
      const name = sharing ? 'half-down-shared.test' : 'half-down.test';
      stub.set(name, { a: ['127.0.0.2', '127.0.0.1'] });
      const before = hits;
      // `/close`: the merchant closes each connection, so every attempt opens a new one and picks an address again.
      for (let i = 0; i < 6; i++) {
        const r = await d.attempt(post(`http://${name}:${port}/close`));
        assert.ok(r.kind === 'response' && r.status === 200, `attempt ${i}: ${JSON.stringify(r)}`);
      }
      assert.equal(hits - before, 6, 'each request reached the merchant once');
      await d.close();
    });

    for (const connections of [1, 2]) {
      it(`with its origin at its connection limit (${connections}), every attempt still reaches the address that is up (shareConnections ${sharing ? 'on' : 'off'})`, async () => {
        const c = { ...cfg, connectionsPerOrigin: connections, perOrigin: { ...cfg.perOrigin, shareConnections: sharing } };
        const d = new HttpDeliverer({ ...c, dnsServers: [stub.address] }, createAddressGuard(c), new SelfAddresses());
        const name = `half-down-busy-${connections}${sharing ? '-shared' : ''}.test`;
        stub.set(name, { a: ['127.0.0.2', '127.0.0.1'] });
        const before = hits;
        // Eight at once: the rest wait, and a connection that failed to open must not be handed to them.
        const results = await Promise.all(Array.from({ length: 8 }, () => d.attempt(post(`http://${name}:${port}/close`))));
        assert.deepEqual(results.map((r) => (r.kind === 'response' ? r.status : r.code)), Array(8).fill(200));
        assert.equal(hits - before, 8);
        await d.close();
      });
    }

    it(`an answer that repeats its address down is tried once per address, without crashing the worker (shareConnections ${sharing ? 'on' : 'off'})`, async () => {
      const c = { ...cfg, perOrigin: { ...cfg.perOrigin, shareConnections: sharing } };
      const d = new HttpDeliverer({ ...c, dnsServers: [stub.address] }, createAddressGuard(c), new SelfAddresses());
      const name = sharing ? 'twice-down-shared.test' : 'twice-down.test';
      stub.set(name, { a: ['127.0.0.2', '127.0.0.2', '127.0.0.1'] });
      for (let i = 0; i < 4; i++) {
        const r = await d.attempt(post(`http://${name}:${port}/close`));
        assert.ok(r.kind === 'response' && r.status === 200, `attempt ${i}: ${JSON.stringify(r)}`);
      }
      stub.set(`only-${name}`, { a: ['127.0.0.2', '127.0.0.2'] });
      const r = await d.attempt(post(`http://only-${name}:${port}/`));
      assert.ok(r.kind === 'error' && r.code === 'ECONNREFUSED', JSON.stringify(r));
      await d.close();
    });

    it(`a name whose addresses are all down fails with the connect's error, each address tried once (shareConnections ${sharing ? 'on' : 'off'})`, async () => {
      const c = { ...cfg, perOrigin: { ...cfg.perOrigin, shareConnections: sharing } };
      const d = new HttpDeliverer({ ...c, dnsServers: [stub.address] }, createAddressGuard(c), new SelfAddresses());
      const name = sharing ? 'all-down-shared.test' : 'all-down.test';
      stub.set(name, { a: ['127.0.0.2', '127.0.0.3'] });
      for (let i = 0; i < 3; i++) {
        const r = await d.attempt(post(`http://${name}:${port}/`));
        assert.ok(r.kind === 'error' && r.code === 'ECONNREFUSED', `attempt ${i}: ${JSON.stringify(r)}`);
      }
      await d.close();
    });
  }
});
