// The contract test: the real daemon's real answers, checked against the
// schemas its OpenAPI documents (docs/openapi-*.json) give for that route
// and status. A documented status whose body does not match its schema, or
// a status the document does not list, fails. Three daemons: one with a
// database (merchants) and tokens, one whose broker is unreachable (503s,
// readiness), one without a database (501 MERCHANTS_DISABLED).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import { DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { freshDatabase, type TestDatabase } from '../../bench/database.js';
import { MerchantStub } from '../../bench/merchant-stub.js';

const SCHEDULE = '0s,1s';
const INGRESS_TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const ADMIN_TOKEN = `adm-${randomBytes(12).toString('hex')}`;
const SECRETS_KEY = randomBytes(32).toString('base64');
const root = join(import.meta.dirname, '..', '..');

type Doc = { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };

/** Checks answers against one document: the status must be documented (or `default`), the body must match its schema. */
class Contract {
  private readonly ajv = new Ajv({ strict: false, validateFormats: false, allowUnionTypes: true });
  private readonly compiled = new Map<string, ValidateFunction>();
  readonly checked: string[] = [];

  constructor(readonly name: string) {
    this.ajv.addSchema({ $id: 'doc', ...(this.doc as object) });
  }

  get doc(): Doc {
    return JSON.parse(readFileSync(join(root, 'docs', `openapi-${this.name}.json`), 'utf8')) as Doc;
  }

  check(method: string, path: string, status: number, body: unknown): void {
    const op = this.doc.paths[path]?.[method.toLowerCase()];
    assert.ok(op, `${method} ${path} is documented`);
    const documented = op.responses[String(status)];
    const answer = documented ?? op.responses.default;
    assert.ok(answer, `${method} ${path} ${status} is documented`);
    if (status >= 400 && documented === undefined) assert.ok(status === 404 || status === 405 || status >= 500, `${status} on ${method} ${path} falls to default`);
    const key = `${method} ${path} ${documented ? status : 'default'}`;
    const schema = answer.content?.['application/json']?.schema;
    if (schema === undefined) {
      assert.ok(body === '' || answer.content !== undefined, `${key}: no body documented, got ${JSON.stringify(body).slice(0, 300)}`);
    } else {
      let v = this.compiled.get(key);
      if (!v) {
        v = this.ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/')) as object);
        this.compiled.set(key, v);
      }
      assert.ok(v(body), `${key}: ${JSON.stringify(v.errors)} in ${JSON.stringify(body).slice(0, 500)}`);
    }
    this.checked.push(`${key}`);
  }
}

async function call(base: string, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; contentType?: string } = {}): Promise<{ status: number; body: unknown; allow: string | null }> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined || opts.raw !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const r = await fetch(`${base}${path}`, { method, headers, ...(opts.raw !== undefined ? { body: opts.raw } : opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
  const text = await r.text();
  return { status: r.status, body: (r.headers.get('content-type') ?? '').includes('json') && text ? JSON.parse(text) : text, allow: r.headers.get('allow') };
}

describe('contract: real answers match the OpenAPI documents', () => {
  const ingress = new Contract('ingress');
  const adminDoc = new Contract('admin');
  const merchant = new MerchantStub();
  const prefixes: string[] = [];
  const daemons: DaemonProcess[] = [];
  let db: TestDatabase;
  let tmp: string;
  let main: DaemonProcess;

  function start(label: string, env: Record<string, string>): DaemonProcess {
    const prefix = uniquePrefix(label);
    prefixes.push(prefix);
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_CONFIG: join(tmp, 'config.json'), ...env } });
    daemons.push(d);
    return d;
  }

  /** A request to the main daemon, its answer checked against the document of its port. */
  async function expect(port: 'ingress' | 'admin', method: string, template: string, status: number, opts: Parameters<typeof call>[3] & { path?: string; daemon?: DaemonProcess } = {}): Promise<any> {
    const d = opts.daemon ?? main;
    const token = opts.token ?? (port === 'ingress' ? INGRESS_TOKEN : ADMIN_TOKEN);
    const r = await call(port === 'ingress' ? d.ingressUrl : d.adminUrl, method, opts.path ?? template, { ...opts, token: token === '-' ? undefined : token });
    assert.equal(r.status, status, `${method} ${opts.path ?? template}: ${JSON.stringify(r.body).slice(0, 300)}`);
    (port === 'ingress' ? ingress : adminDoc).check(method, template, r.status, r.body);
    return r.body;
  }

  before(async () => {
    await merchant.start();
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-contract-'));
    writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ingress: { maxBodyBytes: 64 * 1024 } }));
    db = await freshDatabase('contract');
    main = start('contract', { NOTIFY_DATABASE_URL: db.url, NOTIFY_SECRETS_KEY: SECRETS_KEY, NOTIFY_INGRESS_TOKENS: `billing:${INGRESS_TOKEN}`, NOTIFY_ADMIN_TOKEN: ADMIN_TOKEN });
    await main.ready(40_000);
  });

  after(async () => {
    for (const d of daemons) await d.stop().catch(() => undefined);
    for (const p of prefixes) await deletePrefix(p, SCHEDULE).catch(() => undefined);
    await merchant.close();
    await db?.drop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('ingress: 202, 207, 400, 401, 404, 405, 413, 415 and the probes', async () => {
    const url = `${merchant.base}/ok/contract`;
    const one = await expect('ingress', 'POST', '/v1/notifications', 202, { body: { url, body: { paid: true } } });
    assert.equal(typeof one.id, 'string');
    const all = await expect('ingress', 'POST', '/v1/notifications:batch', 202, { body: { notifications: [{ url, body: 'a' }, { url, body: 'b' }] } });
    assert.equal(all.accepted, 2);
    const mixed = await expect('ingress', 'POST', '/v1/notifications:batch', 207, { body: { notifications: [{ url, body: 'a' }, { url: 'ftp://x', body: 'b' }] } });
    assert.deepEqual([mixed.accepted, mixed.results[1].error.code, mixed.results[1].error.field, mixed.results[1].index], [1, 'VALIDATION', 'url', 1]);
    const invalid = await expect('ingress', 'POST', '/v1/notifications', 400, { body: { url, body: 'x', headers: { Host: 'evil' } } });
    assert.deepEqual([invalid.error.code, invalid.error.field], ['VALIDATION', 'headers.Host']);
    const unknown = await expect('ingress', 'POST', '/v1/notifications', 400, { body: { url, body: 'x', merchant: 'nobody' } });
    assert.equal(unknown.error.code, 'UNKNOWN_MERCHANT');
    assert.equal((await expect('ingress', 'POST', '/v1/notifications', 400, { raw: '{not json' })).error.code, 'BAD_JSON');
    assert.equal((await expect('ingress', 'POST', '/v1/notifications:batch', 400, { body: { notifications: [] } })).error.field, 'notifications');
    assert.equal((await expect('ingress', 'POST', '/v1/notifications', 401, { token: 'wrong', body: { url, body: 'x' } })).error.code, 'UNAUTHORIZED');
    assert.equal((await expect('ingress', 'POST', '/v1/notifications', 413, { body: { url, body: 'x'.repeat(70 * 1024) } })).error.code, 'BODY_TOO_LARGE');
    assert.equal((await expect('ingress', 'POST', '/v1/notifications', 415, { raw: 'url=x', contentType: 'application/x-www-form-urlencoded' })).error.code, 'UNSUPPORTED_MEDIA_TYPE');
    const wrongMethod = await call(main.ingressUrl, 'PUT', '/v1/notifications', { token: INGRESS_TOKEN, body: {} });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.allow, 'GET, HEAD, POST', 'the path is also the history list');
    ingress.check('POST', '/v1/notifications', 405, wrongMethod.body);
    // An unknown path answers with the error body every route documents as its default.
    const nf = await call(main.ingressUrl, 'GET', '/v2/nothing');
    assert.equal(nf.status, 404);
    ingress.check('GET', '/healthz', 404, nf.body);
    await expect('ingress', 'GET', '/healthz', 200, { token: '-' });
    await expect('ingress', 'GET', '/readyz', 200, { token: '-' });
    const doc = await expect('ingress', 'GET', '/openapi.json', 200, { token: '-' });
    assert.deepEqual(doc, ingress.doc, 'the port serves the document in docs/ (same limits)');
  });

  it('admin: status, tiers, origins, dead, redrive, reload, metrics, 401, 404', async () => {
    const status = await expect('admin', 'GET', '/admin/status', 200);
    assert.equal(status.tiers.length, 2);
    await expect('admin', 'GET', '/admin/status', 401, { token: 'wrong' });
    await expect('admin', 'POST', '/admin/tiers/{index}/pause', 200, { path: '/admin/tiers/1/pause' });
    await expect('admin', 'POST', '/admin/tiers/{index}/resume', 200, { path: '/admin/tiers/1/resume' });
    assert.equal((await expect('admin', 'POST', '/admin/tiers/{index}/pause', 404, { path: '/admin/tiers/9/pause' })).error.code, 'TIER_UNKNOWN');
    await expect('admin', 'GET', '/admin/origins', 200, { path: '/admin/origins?limit=5' });
    assert.equal((await expect('admin', 'GET', '/admin/origins', 400, { path: '/admin/origins?limit=x' })).error.field, 'limit');
    await expect('admin', 'GET', '/admin/dead', 200, { path: '/admin/dead?limit=10' });
    await expect('admin', 'POST', '/admin/dead/redrive', 200, { path: '/admin/dead/redrive?limit=10' });
    assert.equal((await expect('admin', 'POST', '/admin/dead/redrive', 400, { path: '/admin/dead/redrive?limit=10&force=on' })).error.field, 'force', 'a typo is not silently "not forced"');
    await expect('admin', 'POST', '/admin/reload', 200);
    const metrics = await call(main.adminUrl, 'GET', '/metrics', { token: ADMIN_TOKEN });
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.body), /notify_ingress_requests_total/);
    adminDoc.check('GET', '/metrics', 200, metrics.body);
    await expect('admin', 'GET', '/healthz', 200, { token: '-' });
    await expect('admin', 'GET', '/readyz', 200, { token: '-' });
    assert.deepEqual(await expect('admin', 'GET', '/openapi.json', 200, { token: '-' }), adminDoc.doc);
    // A route with another method is 405 with the methods it takes in Allow (RFC 9110), a path that is no route 404, whichever the method.
    const answer = async (method: string, path: string, base = main.adminUrl): Promise<[number, string, string | null]> => {
      const r = await call(base, method, path, { token: ADMIN_TOKEN });
      return [r.status, (r.body as { error?: { code: string } }).error?.code ?? '', r.allow];
    };
    const refused: [string, string, string][] = [
      ['POST', '/admin/status', 'GET, HEAD'],
      ['DELETE', '/admin/dead', 'GET, HEAD'],
      ['POST', '/metrics', 'GET, HEAD'],
      ['POST', '/admin/notifications', 'GET, HEAD'],
      ['DELETE', '/admin/notifications/x', 'GET, HEAD'],
      ['GET', '/admin/notifications/x/resend', 'POST'],
      ['GET', '/admin/reload', 'POST'],
      ['GET', '/admin/tiers/0/pause', 'POST'],
      ['PUT', '/admin/merchants', 'GET, HEAD, POST'],
      ['POST', '/admin/merchants/x', 'GET, HEAD, PATCH, DELETE'],
      ['POST', '/healthz', 'GET, HEAD'],
      ['DELETE', '/readyz', 'GET, HEAD'],
      ['GET', '/admin/merchants/x/disable', 'POST'],
    ];
    for (const [method, path, allow] of refused) {
      assert.deepEqual(await answer(method, path), [405, 'METHOD_NOT_ALLOWED', allow], `${method} ${path}`);
    }
    assert.deepEqual(await answer('GET', '/v1/notifications:batch', main.ingressUrl), [405, 'METHOD_NOT_ALLOWED', 'POST'], 'the ingress says so too');
    assert.deepEqual(await answer('GET', '/v1/notifications:recover', main.ingressUrl), [405, 'METHOD_NOT_ALLOWED', 'POST']);
    for (const path of ['/healthz', '/readyz', '/openapi.json']) {
      assert.deepEqual(await answer('POST', path, main.ingressUrl), [405, 'METHOD_NOT_ALLOWED', 'GET, HEAD'], `POST ${path} on the ingress`);
    }
    assert.deepEqual(await answer('POST', '/openapi.json'), [405, 'METHOD_NOT_ALLOWED', 'GET, HEAD'], 'POST /openapi.json on the admin port');
    // HEAD wherever GET is (RFC 9110): the GET's status and headers, no body (a raw socket sees the answer end at its headers).
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    for (const path of ['/admin/status', '/admin/origins', '/admin/dead', '/metrics', '/openapi.json', '/admin/merchants', '/healthz', '/readyz']) {
      const [get, head] = [await fetch(`${main.adminUrl}${path}`, { headers: auth }), await fetch(`${main.adminUrl}${path}`, { method: 'HEAD', headers: auth })];
      await get.arrayBuffer();
      assert.deepEqual([head.status, head.headers.get('content-type')], [get.status, get.headers.get('content-type')], `HEAD ${path} answers as GET does`);
    }
    const raw = await new Promise<string>((resolve, reject) => {
      const url = new URL(main.adminUrl);
      // Written, not ended: the server closes the connection after its answer (Connection: close).
      const sock = connect(Number(url.port), url.hostname, () => sock.write(`HEAD /admin/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nConnection: close\r\n\r\n`));
      let got = '';
      sock.on('data', (c) => (got += c.toString('latin1'))).on('end', () => resolve(got)).on('error', reject);
    });
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.equal(raw.slice(raw.indexOf('\r\n\r\n') + 4), '', 'nothing after the headers');
    assert.equal((await fetch(`${main.adminUrl}/admin/status`, { method: 'HEAD' })).status, 401, 'HEAD without the token is refused as GET is');
    for (const [method, path] of [['GET', '/admin/statuss'], ['GET', '/admin/tiers/0'], ['POST', '/admin/nothing']]) {
      assert.deepEqual(await answer(method!, path!), [404, 'NOT_FOUND', null], `${method} ${path}`);
    }
  });

  it('merchants: create, list, show, change, rotate, disable, enable, delete, and their refusals', async () => {
    const id = `m-${randomBytes(3).toString('hex')}`;
    const created = await expect('admin', 'POST', '/admin/merchants', 201, { body: { id, name: 'Shop', allowedOrigins: [merchant.base] } });
    assert.match(created.secret, /^whsec_/);
    assert.equal((await expect('admin', 'POST', '/admin/merchants', 409, { body: { id, name: 'Shop', allowedOrigins: [merchant.base] } })).error.code, 'MERCHANT_EXISTS');
    assert.equal((await expect('admin', 'POST', '/admin/merchants', 400, { body: { id: 'x', name: 'Shop', allowedOrigins: [] } })).error.field, 'allowedOrigins');
    await expect('admin', 'GET', '/admin/merchants', 200, { path: '/admin/merchants?limit=10' });
    await expect('admin', 'GET', '/admin/merchants/{id}', 200, { path: `/admin/merchants/${id}` });
    assert.equal((await expect('admin', 'GET', '/admin/merchants/{id}', 404, { path: '/admin/merchants/nobody' })).error.code, 'MERCHANT_NOT_FOUND');
    await expect('admin', 'PATCH', '/admin/merchants/{id}', 200, { path: `/admin/merchants/${id}`, body: { maxConcurrency: 4, success: { bodyEquals: 'success' } } });
    await expect('admin', 'PATCH', '/admin/merchants/{id}', 200, { path: `/admin/merchants/${id}`, body: { id, maxConcurrency: 5 } });
    assert.equal((await expect('admin', 'PATCH', '/admin/merchants/{id}', 400, { path: `/admin/merchants/${id}`, body: { id: 'someone-else', maxConcurrency: 6 } })).error.field, 'id', 'another merchant named in the body');
    const rotated = await expect('admin', 'POST', '/admin/merchants/{id}/rotate-secret', 200, { path: `/admin/merchants/${id}/rotate-secret`, body: { grace: '1h' } });
    assert.equal(rotated.merchant.secrets.length, 2);
    for (const grace of ['99999999999d', '31d', 3600]) {
      assert.equal((await expect('admin', 'POST', '/admin/merchants/{id}/rotate-secret', 400, { path: `/admin/merchants/${id}/rotate-secret`, body: { grace } })).error.field, 'grace', String(grace));
    }
    assert.equal((await expect('admin', 'POST', '/admin/merchants/{id}/rotate-secret', 400, { path: `/admin/merchants/${id}/rotate-secret`, raw: 'null', contentType: 'application/json' })).error.field, 'body');
    assert.equal((await expect('admin', 'POST', '/admin/merchants/{id}/disable', 400, { path: `/admin/merchants/${id}/disable`, raw: 'null', contentType: 'application/json' })).error.field, 'body');
    assert.equal((await expect('admin', 'POST', '/admin/merchants/{id}/enable', 400, { path: `/admin/merchants/${id}/enable`, raw: '[]', contentType: 'application/json' })).error.field, 'body');
    assert.equal((await expect('admin', 'GET', '/admin/merchants/{id}', 400, { path: '/admin/merchants/%ZZ' })).error.field, 'id');
    assert.equal((await expect('admin', 'DELETE', '/admin/merchants/{id}', 400, { path: '/admin/merchants/%E0%A4%A' })).error.field, 'id');
    await expect('admin', 'POST', '/admin/merchants/{id}/disable', 200, { path: `/admin/merchants/${id}/disable`, body: { reason: 'contract test' } });
    // Every process sees the change within about a second: the ingress then refuses it with 409.
    await waitFor(async () => (await call(main.ingressUrl, 'POST', '/v1/notifications', { token: INGRESS_TOKEN, body: { merchant: id, url: `${merchant.base}/ok/m`, body: 'x' } })).status === 409, 10_000, 'ingress sees the merchant disabled');
    assert.equal((await expect('ingress', 'POST', '/v1/notifications', 409, { body: { merchant: id, url: `${merchant.base}/ok/m`, body: 'x' } })).error.code, 'MERCHANT_DISABLED');
    await expect('admin', 'POST', '/admin/merchants/{id}/enable', 200, { path: `/admin/merchants/${id}/enable` });
    await expect('admin', 'DELETE', '/admin/merchants/{id}', 204, { path: `/admin/merchants/${id}` });
  });

  it('history: one notification, a listing, resend, recover, and their refusals, on both ports', async () => {
    const id = `h-${randomBytes(3).toString('hex')}`;
    await expect('ingress', 'POST', '/v1/notifications', 202, { body: { id, url: `${merchant.base}/ok/history`, body: 'x' } });
    // The recorder writes in batches: wait until the history has it delivered.
    await waitFor(async () => {
      const r = await call(main.ingressUrl, 'GET', `/v1/notifications/${id}`, { token: INGRESS_TOKEN });
      return r.status === 200 && (r.body as { notification: { status: string } }).notification.status === 'delivered';
    }, 20_000, 'delivered in the history');
    const timeline = await expect('ingress', 'GET', '/v1/notifications/{id}', 200, { path: `/v1/notifications/${id}` });
    assert.equal(timeline.attempts.length, 1);
    await expect('admin', 'GET', '/admin/notifications/{id}', 200, { path: `/admin/notifications/${id}` });
    assert.equal((await expect('ingress', 'GET', '/v1/notifications/{id}', 404, { path: '/v1/notifications/never-seen' })).error.code, 'NOT_FOUND');
    const page = await expect('ingress', 'GET', '/v1/notifications', 200, { path: '/v1/notifications?limit=5&since=1h' });
    assert.ok(page.notifications.some((n: { id: string }) => n.id === id));
    await expect('admin', 'GET', '/admin/notifications', 200, { path: '/admin/notifications?status=delivered' });
    assert.equal((await expect('ingress', 'GET', '/v1/notifications', 400, { path: '/v1/notifications?status=lost' })).error.field, 'status');
    const resent = await expect('ingress', 'POST', '/v1/notifications/{id}/resend', 202, { path: `/v1/notifications/${id}/resend` });
    assert.equal(resent.previousStatus, 'delivered');
    await expect('admin', 'POST', '/admin/notifications/{id}/resend', 202, { path: `/admin/notifications/${id}/resend?force=1` });
    // A merchant's dead ones in a window, sent again.
    const m = `hm-${randomBytes(3).toString('hex')}`;
    await expect('admin', 'POST', '/admin/merchants', 201, { body: { id: m, name: 'Gone', allowedOrigins: [merchant.base] } });
    const goneId = `${m}-1`;
    await waitFor(async () => (await call(main.ingressUrl, 'POST', '/v1/notifications', { token: INGRESS_TOKEN, body: { id: goneId, merchant: m, url: `${merchant.base}/status/410/${m}`, body: 'x' } })).status === 202, 10_000, 'the ingress knows the merchant');
    await waitFor(async () => {
      const r = await call(main.adminUrl, 'GET', `/admin/notifications/${goneId}`, { token: ADMIN_TOKEN });
      return r.status === 200 && (r.body as { notification: { status: string } }).notification.status === 'dead';
    }, 20_000, 'dead in the history');
    const recovered = await expect('ingress', 'POST', '/v1/notifications:recover', 202, { body: { merchant: m, since: '1h' } });
    assert.equal(recovered.matched, 1);
    await expect('admin', 'POST', '/admin/notifications:recover', 202, { body: { merchant: m, since: '1h' } });
    assert.equal((await expect('ingress', 'POST', '/v1/notifications:recover', 400, { body: { merchant: m, since: 'yesterday-ish' } })).error.field, 'since');
  });

  it('without a broker: 503 on the ingress (single and batch), readiness 503; without a database: 501', async () => {
    const d = start('contract-nobroker', { NOTIFY_AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' });
    await waitFor(() => d.ingressPort > 0 && d.adminPort > 0, 30_000, 'listening');
    const url = `${merchant.base}/ok/x`;
    await waitFor(async () => (await call(d.ingressUrl, 'POST', '/v1/notifications', { body: { url, body: 'x' } })).status === 503, 20_000, 'ingress up, answering 503');
    const one = await expect('ingress', 'POST', '/v1/notifications', 503, { daemon: d, token: '-', body: { url, body: 'x' } });
    assert.equal(one.error.code, 'BROKER_UNAVAILABLE');
    assert.match(String(one.id), /^[0-9a-f-]{36}$/, 'the id the ingress made, to retry with');
    const given = await expect('ingress', 'POST', '/v1/notifications', 503, { daemon: d, token: '-', body: { id: 'mine-1', url, body: 'x' } });
    assert.equal(given.id, 'mine-1');
    const batch = await expect('ingress', 'POST', '/v1/notifications:batch', 503, { daemon: d, token: '-', body: { notifications: [{ url, body: 'x' }] } });
    assert.equal(batch.accepted, 0);
    assert.match(String(batch.results[0].id), /^[0-9a-f-]{36}$/, "each refused item's id");
    await expect('ingress', 'GET', '/readyz', 503, { daemon: d, token: '-' });
    await expect('admin', 'GET', '/readyz', 503, { daemon: d, token: '-' });
    assert.equal((await expect('admin', 'GET', '/admin/dead', 503, { daemon: d, token: '-' })).error.code, 'BROKER_UNAVAILABLE');
    assert.equal((await expect('admin', 'POST', '/admin/dead/redrive', 503, { daemon: d, token: '-' })).error.code, 'BROKER_UNAVAILABLE');
    assert.equal((await expect('admin', 'GET', '/admin/merchants', 501, { daemon: d, token: '-' })).error.code, 'MERCHANTS_DISABLED');
    assert.equal((await expect('admin', 'POST', '/admin/merchants', 501, { daemon: d, token: '-', body: { id: 'a' } })).error.code, 'MERCHANTS_DISABLED');
    assert.equal((await expect('ingress', 'GET', '/v1/notifications/{id}', 501, { daemon: d, token: '-', path: '/v1/notifications/x' })).error.code, 'HISTORY_DISABLED');
    assert.equal((await expect('admin', 'GET', '/admin/notifications', 501, { daemon: d, token: '-' })).error.code, 'HISTORY_DISABLED');
  });

  it('checked every answer the documents list for the routes it called', () => {
    const seen = new Set([...ingress.checked, ...adminDoc.checked]);
    for (const s of ['202', '207', '400', '401', '404', '413', '415', '503']) assert.ok([...seen].some((k) => k.endsWith(` ${s}`)), `an answer ${s} was checked`);
  });
});
