import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadConfig, type DeliveryConfig } from '../../src/core/config.js';
import { createAddressGuard } from '../../src/delivery/address-guard.js';
import { SelfAddresses } from '../../src/delivery/connector.js';
import { HttpDeliverer } from '../../src/delivery/deliverer.js';

/** A local merchant: the path says how to answer. */
function startServer(): Promise<{ server: http.Server; base: string; seen: string[]; connections: () => number }> {
  const seen: string[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      seen.push(`${req.method} ${url.pathname}${url.search} ${req.headers['content-type']} ${Buffer.concat(chunks).toString()}`);
      const [, kind, arg] = url.pathname.split('/');
      switch (kind) {
        case 'ok':
          res.writeHead(200, { 'content-type': 'text/plain' }).end(arg ?? 'success');
          return;
        case 'status':
          res.writeHead(Number(arg)).end(`status ${arg}`);
          return;
        case 'big':
          res.writeHead(200).end('x'.repeat(Number(arg)));
          return;
        case 'redirect':
          res.writeHead(302, { location: '/ok/moved' }).end();
          return;
        case 'hang':
          return; // never answers
        case 'wait':
          setTimeout(() => res.writeHead(200).end('waited'), Number(arg));
          return;
        case 'slowbody':
          res.writeHead(200);
          res.write('partial');
          return; // body never ends
        default:
          res.writeHead(404).end();
      }
    });
  });
  server.on('connection', () => connections++);
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, base: `http://127.0.0.1:${port}`, seen, connections: () => connections });
    });
  });
}

const CFG: DeliveryConfig = {
    ...loadConfig({ env: {} }).delivery,
  timeoutMs: 300,
  connectTimeoutMs: 200,
  headersTimeoutMs: 10_000,
  maxResponseBytes: 1024,
  concurrency: 8,
  connectionsPerOrigin: 1,
  deadOnStatus: [],
  success: { status: '2xx' },
  allowPrivateNetworks: true,
  allowCidrs: [],
  dnsServers: [],
  dnsTimeoutMs: 500,
};

const post = (url: string, body = 'a=1') => ({ url, method: 'POST' as const, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });

describe('HttpDeliverer', () => {
  let srv: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    srv = await startServer();
  });
  after(() => {
    srv.server.closeAllConnections();
    srv.server.close();
  });

  it('sends method, path, query, headers and body, and reads status and body', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const r = await d.attempt(post(`${srv.base}/ok/success?x=1&y=2`, 'k=v&z=%E4%B8%AD'));
    assert.equal(r.kind, 'response');
    assert.ok(r.kind === 'response' && r.status === 200 && r.body === 'success');
    assert.ok(r.durationMs >= 0);
    assert.equal(srv.seen.at(-1), 'POST /ok/success?x=1&y=2 application/x-www-form-urlencoded k=v&z=%E4%B8%AD');
    await d.close();
  });

  it('reads the body of non-2xx answers', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const r = await d.attempt(post(`${srv.base}/status/503`), false);
    assert.deepEqual({ ...r, durationMs: 0, sentAt: 0 }, { kind: 'response', status: 503, body: 'status 503', durationMs: 0, sentAt: 0 });
    await d.close();
  });

  it('skips the body of a 2xx when nobody needs it, and keeps the connection', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const before = srv.connections();
    for (let i = 0; i < 3; i++) {
      const r = await d.attempt(post(`${srv.base}/big/5000`), false);
      assert.deepEqual({ ...r, durationMs: 0, sentAt: 0 }, { kind: 'response', status: 200, body: '', durationMs: 0, sentAt: 0 });
    }
    assert.equal(srv.connections() - before, 1, 'one keep-alive connection for all three');
    // With history on it keeps the first bytes all the same (and the connection).
    const head = await d.attempt(post(`${srv.base}/big/5000`), false, 1024);
    assert.deepEqual({ ...head, durationMs: 0, sentAt: 0 }, { kind: 'response', status: 200, body: 'x'.repeat(1024), durationMs: 0, sentAt: 0 });
    const small = await d.attempt(post(`${srv.base}/ok/fine`), false, 1024);
    assert.ok(small.kind === 'response' && small.body === 'fine');
    assert.equal(srv.connections() - before, 1);
    await d.close();
  });

  it('caps the body read at maxResponseBytes, dropping the connection only when there was more', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const before = srv.connections();
    const exact = await d.attempt(post(`${srv.base}/big/${CFG.maxResponseBytes}`));
    assert.ok(exact.kind === 'response' && exact.body === 'x'.repeat(CFG.maxResponseBytes));
    const over = await d.attempt(post(`${srv.base}/big/200000`));
    assert.ok(over.kind === 'response');
    assert.equal(over.status, 200);
    assert.equal(over.body, 'x'.repeat(CFG.maxResponseBytes));
    assert.equal(srv.connections() - before, 1, 'a body of exactly the cap keeps the connection');
    // The connection was dropped, not poisoned: the next attempt works on a new one.
    const again = await d.attempt(post(`${srv.base}/ok/fine`));
    assert.ok(again.kind === 'response' && again.body === 'fine');
    assert.equal(srv.connections() - before, 2);
    // A large unread 2xx is drained only so far, then dropped.
    const big = await d.attempt(post(`${srv.base}/big/1000000`), false);
    assert.deepEqual({ ...big, durationMs: 0, sentAt: 0 }, { kind: 'response', status: 200, body: '', durationMs: 0, sentAt: 0 });
    await d.close();
  });

  it('does not follow redirects', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const n = srv.seen.length;
    const r = await d.attempt(post(`${srv.base}/redirect/x`), false);
    assert.ok(r.kind === 'response' && r.status === 302);
    assert.equal(srv.seen.length - n, 1);
    await d.close();
  });

  it('times out a merchant that never answers, or never finishes its body', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    for (const path of ['/hang', '/slowbody']) {
      const r = await d.attempt(post(`${srv.base}${path}`));
      assert.equal(r.kind, 'error', path);
      assert.ok(r.kind === 'error' && r.code === 'TIMEOUT', path);
      assert.ok(r.durationMs >= CFG.timeoutMs - 5 && r.durationMs < CFG.timeoutMs + 1000, `${path}: ${r.durationMs}`);
    }
    await d.close();
  });

  it('counts time queued for a connection against the deadline, and recovers afterwards', async () => {
    // One connection per origin: the second attempt waits behind the hanging first.
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const [a, b] = await Promise.all([d.attempt(post(`${srv.base}/hang`)), d.attempt(post(`${srv.base}/ok/late`))]);
    assert.ok(a.kind === 'error' && a.code === 'TIMEOUT');
    assert.ok(b.kind === 'error' && b.code === 'TIMEOUT');
    assert.ok(b.durationMs < CFG.timeoutMs + 1000);
    assert.ok(!srv.seen.some((l) => l.includes('/ok/late')), 'a request timed out in the queue is never sent');
    const c = await d.attempt(post(`${srv.base}/ok/after`));
    assert.ok(c.kind === 'response' && c.body === 'after', JSON.stringify(c));
    await d.close();
  });

  it('with a pool, every queued attempt times out and none of them is sent late', async () => {
    const d = new HttpDeliverer({ ...CFG, connectionsPerOrigin: 2 }, null, new SelfAddresses());
    const before = srv.connections();
    const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => d.attempt(post(`${srv.base}/hang?pool=${i}`))));
    for (const r of rs) {
      assert.ok(r.kind === 'error' && r.code === 'TIMEOUT', JSON.stringify(r));
      assert.ok(r.durationMs < CFG.timeoutMs + 1000, String(r.durationMs));
    }
    assert.ok(srv.seen.filter((l) => l.includes('?pool=')).length <= 2, 'only the two on a connection reached the merchant');
    assert.equal(srv.connections() - before, 2, 'an attempt out of time while waiting for a connection opens none (no connect just to abort)');
    const ok = await d.attempt(post(`${srv.base}/ok/pool`));
    assert.ok(ok.kind === 'response' && ok.body === 'pool');
    await d.close();
  });

  it('says when a request went out (after its wait for a connection), and nothing when none did', async () => {
    // One connection per origin: the second attempt waits behind the first, which the merchant answers after 150 ms.
    const d = new HttpDeliverer({ ...CFG, timeoutMs: 2000 }, null, new SelfAddresses());
    const t0 = Date.now();
    const [a, b] = await Promise.all([d.attempt(post(`${srv.base}/wait/150`)), d.attempt(post(`${srv.base}/ok/second`))]);
    const t1 = Date.now();
    assert.ok(a.kind === 'response' && b.kind === 'response');
    assert.ok(a.sentAt !== undefined && b.sentAt !== undefined, 'both were sent');
    assert.ok(a.sentAt >= t0 && b.sentAt <= t1, `${t0} ≤ ${a.sentAt}, ${b.sentAt} ≤ ${t1}`);
    // The second went out only once the first had its answer (not when attempt() was called): on the one connection, after it.
    assert.ok(b.sentAt >= a.sentAt + 140, `${b.sentAt} at least 140 ms after ${a.sentAt}`);
    const refused = await d.attempt(post('http://127.0.0.1:1/x'));
    assert.ok(refused.kind === 'error' && refused.sentAt === undefined, JSON.stringify(refused));
    const queued = await Promise.all([d.attempt(post(`${srv.base}/hang`)), d.attempt(post(`${srv.base}/ok/never`))]);
    assert.ok(queued[0].sentAt !== undefined, 'the hanging one was sent');
    assert.equal(queued[1].sentAt, undefined, 'the one that timed out waiting for the connection never was');
    await d.close();
  });

  it('maps the headers deadline to HEADERS_TIMEOUT', async () => {
    const d = new HttpDeliverer({ ...CFG, headersTimeoutMs: 50, timeoutMs: 5000 }, null, new SelfAddresses());
    const r = await d.attempt(post(`${srv.base}/hang`));
    assert.ok(r.kind === 'error' && r.code === 'HEADERS_TIMEOUT', JSON.stringify(r));
    await d.close();
  });

  it('applies the address guard: literal addresses before sending (permanent), names at connect time (DNS_BLOCKED: DNS may be wrong for a while)', async () => {
    const guarded = { ...CFG, allowPrivateNetworks: false };
    const literal = new HttpDeliverer(guarded, createAddressGuard(guarded), new SelfAddresses());
    const n = srv.seen.length;
    const r = await literal.attempt(post(`${srv.base}/ok/x`));
    assert.ok(r.kind === 'error' && r.code === 'DESTINATION_BLOCKED', JSON.stringify(r));
    const port = new URL(srv.base).port;
    const named = await literal.attempt(post(`http://localhost:${port}/ok/x`));
    assert.ok(named.kind === 'error' && named.code === 'DNS_BLOCKED', JSON.stringify(named));
    assert.equal(srv.seen.length, n, 'the merchant saw nothing');
    await literal.close();
  });

  it('reports transport errors and bad URLs as error codes, never throws', async () => {
    const d = new HttpDeliverer(CFG, null, new SelfAddresses());
    const refused = await d.attempt(post('http://127.0.0.1:1/x'));
    assert.ok(refused.kind === 'error' && refused.code === 'ECONNREFUSED', JSON.stringify(refused));
    const bad = await d.attempt(post('http://[::1/x'));
    assert.ok(bad.kind === 'error' && bad.code === 'INVALID_URL');
    const badHeader = await d.attempt({ ...post(`${srv.base}/ok/x`), headers: { 'x-bad': 'a\r\nb' } });
    assert.ok(badHeader.kind === 'error' && badHeader.code === 'UND_ERR_INVALID_ARG', JSON.stringify(badHeader));
    await d.close();
    const closed = await d.attempt(post(`${srv.base}/ok/x`));
    assert.ok(closed.kind === 'error' && ['UND_ERR_CLOSED', 'UND_ERR_DESTROYED'].includes(closed.code), JSON.stringify(closed));
  });
});
