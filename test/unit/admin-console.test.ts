// The admin port serves the console's files without a token, under a strict
// CSP, from the built folder only; GET /admin/dead is an API route like the
// others (token, validated limit).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { AdminServer, type AdminTarget } from '../../src/admin/server.js';
import { CONSOLE_HEADERS, ConsoleFiles, isConsolePath } from '../../src/admin/console-files.js';
import type { AdminConfig } from '../../src/core/config.js';

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const TOKEN = 'console-unit-token';

describe('admin port: console files and GET /admin/dead', () => {
  const dir = mkdtempSync(join(tmpdir(), 'notifyd-console-'));
  const listCalls: number[] = [];
  const target = {
    listDead: async (limit: number) => {
      listCalls.push(limit);
      return { total: 0, byReason: {}, messages: [] };
    },
    readiness: () => ({ ready: true, reasons: [] }),
  } as unknown as AdminTarget;
  const cfg: AdminConfig = { port: 0, host: '127.0.0.1', token: TOKEN };
  const server = new AdminServer(cfg, () => cfg, target, pino({ level: 'silent' }), new ConsoleFiles(dir));
  let base = '';

  before(async () => {
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>c</title>');
    writeFileSync(join(dir, 'app-ABCD1234.js'), 'console.log(1)');
    writeFileSync(join(dir, 'app-ABCD1234.css'), 'body{}');
    writeFileSync(join(dir, 'notes.txt'), 'plain');
    base = `http://127.0.0.1:${await server.listen()}`;
  });

  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const securityHeaders = (r: Response): void => {
    assert.equal(r.headers.get('content-security-policy'), CSP);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(r.headers.get('set-cookie'), null, 'no cookies');
  };

  it('GET / is index.html, without a token, never cached, under the CSP', async () => {
    const r = await fetch(`${base}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    securityHeaders(r);
    assert.equal(await r.text(), '<!doctype html><title>c</title>');
    assert.equal(CONSOLE_HEADERS['content-security-policy'], CSP);
  });

  it('assets: content types; hashed names cached for good, others revalidated', async () => {
    const js = await fetch(`${base}/console/app-ABCD1234.js`);
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    securityHeaders(js);
    assert.equal(await js.text(), 'console.log(1)');
    const css = await fetch(`${base}/console/app-ABCD1234.css`);
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
    await css.arrayBuffer();
    const txt = await fetch(`${base}/console/notes.txt`);
    assert.equal(txt.headers.get('cache-control'), 'no-cache');
    await txt.arrayBuffer();
  });

  it('HEAD answers headers only; other methods 405', async () => {
    const head = await fetch(`${base}/`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const post = await fetch(`${base}/`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    securityHeaders(post);
    await post.arrayBuffer();
  });

  it('only plain names of the built folder: no traversal, no index under /console/, 404s under the CSP too', async () => {
    for (const p of ['/console/%2e%2e%2fpackage.json', '/console/..%2F..%2Fetc%2Fpasswd', '/console/.hidden', '/console/missing.js', '/console/index.html', '/console/', '/console']) {
      const r = await fetch(`${base}${p}`);
      assert.equal(r.status, 404, p);
      securityHeaders(r);
      await r.arrayBuffer();
    }
    // A literal ../ is resolved by the URL parser before routing: it leaves /console/ and meets the token check.
    const r = await fetch(`${base}/console/../admin/status`);
    assert.equal(r.status, 401);
    await r.arrayBuffer();
  });

  it('an unbuilt console says how to build it', async () => {
    const empty = new AdminServer(cfg, () => cfg, target, pino({ level: 'silent' }), new ConsoleFiles(join(dir, 'nope')));
    const port = await empty.listen();
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(r.status, 404);
      assert.match(await r.text(), /npm run build/);
    } finally {
      await empty.close();
    }
  });

  it('GET /admin/dead needs the token and a limit from 1 to 1000 (default 50)', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const no = await fetch(`${base}/admin/dead`);
    assert.equal(no.status, 401);
    await no.arrayBuffer();
    const ok = await fetch(`${base}/admin/dead`, { headers: auth });
    assert.equal(ok.status, 200);
    // API answers (one-time secrets among them) are never stored by a cache and never sniffed.
    for (const r of [no, ok]) assert.deepEqual([r.headers.get('cache-control'), r.headers.get('x-content-type-options')], ['no-store', 'nosniff'], String(r.status));
    assert.deepEqual(await ok.json(), { total: 0, byReason: {}, messages: [] });
    const max = await fetch(`${base}/admin/dead?limit=1000`, { headers: auth });
    assert.equal(max.status, 200);
    await max.arrayBuffer();
    assert.deepEqual(listCalls, [50, 1000]);
    for (const bad of ['0', '1001', '-1', 'x', '1.5']) {
      const r = await fetch(`${base}/admin/dead?limit=${bad}`, { headers: auth });
      assert.equal(r.status, 400, bad);
      const b = (await r.json()) as { error: { code: string; field: string } };
      assert.equal(b.error.code, 'VALIDATION');
      assert.equal(b.error.field, 'limit');
    }
    assert.deepEqual(listCalls, [50, 1000]);
  });

  it('isConsolePath', () => {
    assert.equal(isConsolePath('/'), true);
    assert.equal(isConsolePath('/console/app.js'), true);
    assert.equal(isConsolePath('/consoles'), false);
    assert.equal(isConsolePath('/admin/status'), false);
    assert.equal(isConsolePath('/metrics'), false);
  });
});
