// A token-less admin port (loopback only) refuses what a web page could make a
// browser send it: cross-site requests and requests for a rebound name.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { foreignBrowserRequest } from '../../src/core/browser-guard.js';
import { ConsoleFiles } from '../../src/admin/console-files.js';
import { AdminServer, type AdminTarget } from '../../src/admin/server.js';
import type { AdminConfig } from '../../src/core/config.js';

describe('foreignBrowserRequest', () => {
  it('clients that are not browsers pass by a loopback name; any other Host is refused, since an old browser reading through a rebound name sends nothing else', () => {
    for (const host of ['127.0.0.1:9464', 'localhost:9464', '[::1]:9464']) assert.equal(foreignBrowserRequest({ host }), null, host);
    assert.match(foreignBrowserRequest({ host: 'anything.example' }) ?? '', /not a loopback name/);
    assert.match(foreignBrowserRequest({ host: 'rebind.attacker.example:9464', accept: '*/*' }) ?? '', /not a loopback name/);
  });

  it('the console itself: same-origin (or typed in), on a loopback name', () => {
    for (const host of ['127.0.0.1:9464', 'localhost:9464', '[::1]:9464', '127.0.0.2', 'console.localhost:9464']) {
      assert.equal(foreignBrowserRequest({ 'sec-fetch-site': 'same-origin', host }), null, host);
      assert.equal(foreignBrowserRequest({ 'sec-fetch-site': 'none', host }), null, host);
    }
  });

  it('another site, or a name rebound to loopback, is refused', () => {
    assert.match(foreignBrowserRequest({ 'sec-fetch-site': 'cross-site', host: '127.0.0.1:9464' }) ?? '', /another site/);
    assert.match(foreignBrowserRequest({ 'sec-fetch-site': 'same-site', host: '127.0.0.1:9464' }) ?? '', /another site/);
    assert.match(foreignBrowserRequest({ 'sec-fetch-site': 'same-origin', host: 'rebind.attacker.example:9464' }) ?? '', /not a loopback name/);
    assert.match(foreignBrowserRequest({ 'sec-fetch-site': 'same-origin' }) ?? '', /not a loopback name/);
    assert.match(foreignBrowserRequest({ 'sec-fetch-site': 'same-origin', host: '127.0.0.1.attacker.example:9464' }) ?? '', /not a loopback name/, 'a name that only starts like a loopback address');
  });

  it('a browser that sends no Sec-Fetch-Site is judged by its Origin', () => {
    for (const origin of ['https://shop.attacker.example', 'null', 'http://127.0.0.1.attacker.example:9464']) {
      assert.match(foreignBrowserRequest({ origin, host: '127.0.0.1:9464' }) ?? '', /another site/, origin);
    }
    for (const origin of ['http://127.0.0.1:9464', 'http://localhost:3000', 'http://[::1]:9464', 'http://console.localhost']) {
      assert.equal(foreignBrowserRequest({ origin, host: '127.0.0.1:9464' }), null, origin);
    }
    assert.match(foreignBrowserRequest({ origin: 'http://127.0.0.1:9464', host: 'rebind.attacker.example:9464' }) ?? '', /not a loopback name/);
  });
});

describe('admin port without a token', () => {
  const calls: string[] = [];
  const target = {
    pause: (i: number) => {
      calls.push(`pause ${i}`);
      return { index: i, delayMs: 0, state: 'paused', pid: 1, restarts: 0, inflight: 0 };
    },
    readiness: () => ({ ready: true, reasons: [] }),
  } as unknown as AdminTarget;
  const cfg: AdminConfig = { port: 0, host: '127.0.0.1', token: null };
  const server = new AdminServer(cfg, () => cfg, target, pino({ level: 'silent' }), new ConsoleFiles('/nonexistent'));
  let port = 0;

  /** node:http, because fetch will not let a caller set Host or Sec-Fetch-Site. */
  const send = (method: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    port = await server.listen();
  });

  after(() => server.close());

  it('a cross-site POST (a form on any web page) does not pause a tier: 403 FORBIDDEN', async () => {
    const r = await send('POST', '/admin/tiers/0/pause', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).error.code, 'FORBIDDEN');
    const rebound = await send('POST', '/admin/tiers/0/pause', { 'sec-fetch-site': 'same-origin', host: `evil.example:${port}` });
    assert.equal(rebound.status, 403);
    assert.deepEqual(calls, []);
  });

  it('the console (same-origin on 127.0.0.1) and curl-like clients go through', async () => {
    assert.equal((await send('POST', '/admin/tiers/0/pause', { 'sec-fetch-site': 'same-origin', origin: `http://127.0.0.1:${port}` })).status, 200);
    assert.equal((await send('POST', '/admin/tiers/0/pause', {})).status, 200);
    assert.deepEqual(calls, ['pause 0', 'pause 0']);
  });

  it('the console page itself still loads from a link on another site', async () => {
    const r = await send('GET', '/', { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' });
    assert.equal(r.status, 404, 'not built here, but not refused');
    assert.match(r.body, /npm run build/);
  });
});
