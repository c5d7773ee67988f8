// Security and bad input against the real daemon: SSRF guard, signatures checked
// by independent libraries, input storms, poison messages, admin auth, redrive.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseQuery } from 'node:querystring';
import { after, before, describe, it, type TestContext } from 'node:test';
import amqp from 'amqplib';
import { AlipaySdk } from 'alipay-sdk';
import { Webhook } from 'standardwebhooks';
import { AMQP_URL, CLI_PATH, DaemonProcess, deletePrefix, parkedMessages, queueDepths, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { verifyWebhook } from '../../src/verify-webhook.js';

const SCHEDULE = '0s,300ms';

interface Status {
  tiers: { index: number; state: string; pid: number | null; restarts: number }[];
}

describe('security and bad input (real daemon)', () => {
  const merchant = new MerchantStub();
  const prefixes: string[] = [];
  const daemons: DaemonProcess[] = [];
  let tmp: string;

  async function daemon(label: string, env: Record<string, string> = {}): Promise<DaemonProcess> {
    const prefix = uniquePrefix(label);
    prefixes.push(prefix);
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env });
    daemons.push(d);
    return d.ready();
  }

  async function deadHeaders(prefix: string): Promise<Record<string, unknown>[]> {
    return (await parkedMessages(prefix)).map((m) => ({ ...m.headers, messageId: m.id }));
  }

  before(async () => {
    await merchant.start();
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-sec-'));
  });

  after(async () => {
    for (const d of daemons) await d.stop().catch(() => d.proc.kill('SIGKILL'));
    await merchant.close();
    for (const p of prefixes) await deletePrefix(p, SCHEDULE).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('a destination on 127.0.0.1 / localhost is never called and is parked `blocked` when private networks are not allowed', async () => {
    const d = await daemon('ssrf', { NOTIFY_ALLOW_CIDRS: '' });
    const p1 = `/fail/0/ssrf-ip-${d.opts.prefix}`;
    const p2 = `/fail/0/ssrf-name-${d.opts.prefix}`;
    const p3 = `/fail/0/ssrf-mapped-${d.opts.prefix}`;
    for (const url of [`${merchant.base}${p1}`, `http://localhost:${merchant.port}${p2}`, `http://[::ffff:127.0.0.1]:${merchant.port}${p3}`]) {
      assert.equal((await d.post({ url, body: { a: 1 } })).status, 202);
    }
    await waitFor(async () => (await deadHeaders(d.opts.prefix)).length === 3, 10_000, '3 parked');
    const parked = await deadHeaders(d.opts.prefix);
    assert.deepEqual(parked.map((h) => h['notify-dead-reason']), ['blocked', 'blocked', 'blocked']);
    assert.equal(merchant.count(p1) + merchant.count(p2) + merchant.count(p3), 0, 'merchant never called');
    // blocked ones are not redriven unless forced
    await waitFor(async () => (await queueDepths(d.opts.prefix, SCHEDULE))[`${d.opts.prefix}.dead`] === 3, 5000, 'dead queue settled');
    const r = await d.admin<{ moved: number; skipped: number }>('POST', '/admin/dead/redrive?limit=10');
    assert.equal(r.body.moved, 0);
    assert.equal(r.body.skipped, 3);
    // Two redrives at once (e.g. an operator and the cron job) run one after the other, each stepping over the 3 once.
    const [a, b] = await Promise.all([
      d.admin<{ moved: number; skipped: number }>('POST', '/admin/dead/redrive?limit=10'),
      d.admin<{ moved: number; skipped: number }>('POST', '/admin/dead/redrive?limit=10'),
    ]);
    assert.deepEqual([a.body.skipped, b.body.skipped, a.body.moved + b.body.moved], [3, 3, 0]);
    const forced = await d.admin<{ moved: number }>('POST', '/admin/dead/redrive?limit=1&force=1');
    assert.equal(forced.body.moved, 1);
  });

  it('standard signatures verify with the standardwebhooks package and verifyWebhook(), with two secrets during rotation', async () => {
    const s1 = `whsec_${randomBytes(24).toString('base64')}`;
    const s2 = `whsec_${randomBytes(24).toString('base64')}`;
    const d = await daemon('std', { NOTIFY_SIGNING_SECRET: `${s1},${s2}` });
    const path = `/fail/0/std-${d.opts.prefix}`;
    const r = await d.post({ url: `${merchant.base}${path}`, body: { amount: '9.99', subject: '测试 & =' } });
    await waitFor(() => merchant.count(path) === 1, 5000, 'signed delivery');
    const req = merchant.seen(path)[0]!;
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    assert.equal(headers['webhook-id'], r.body.id);
    for (const secret of [s1, s2]) {
      assert.deepEqual(new Webhook(secret).verify(req.body.toString('utf8'), headers), { amount: '9.99', subject: '测试 & =' });
      assert.equal(verifyWebhook({ secrets: secret, headers, body: req.body }).id, r.body.id);
    }
    const other = `whsec_${randomBytes(24).toString('base64')}`;
    assert.throws(() => new Webhook(other).verify(req.body.toString('utf8'), headers));
  });

  it('rsa2 signatures verify with alipay-sdk checkNotifySign (non-ASCII, & and = in values)', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = join(tmp, 'notifyd-private.pem');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const d = await daemon('rsa2', { NOTIFY_SIGNING_SCHEME: 'rsa2', NOTIFY_SIGNING_KEY_FILE: keyFile });
    const path = `/body/success/rsa2-${d.opts.prefix}`;
    const fields = { notify_id: 'n-1', out_trade_no: '20261124001', subject: '测试商品 a&b=c', total_amount: '88.88', trade_status: 'TRADE_SUCCESS' };
    const r = await d.post({ url: `${merchant.base}${path}`, body: fields, contentType: 'application/x-www-form-urlencoded', success: { bodyEquals: 'success' } });
    assert.equal(r.status, 202);
    await waitFor(() => merchant.count(path) === 1, 10_000, 'rsa2 delivery');
    const form = parseQuery(merchant.seen(path)[0]!.body.toString('utf8')) as Record<string, string>;
    assert.equal(form.sign_type, 'RSA2');
    assert.equal(form.subject, '测试商品 a&b=c');
    const sdk = new AlipaySdk({ appId: '2021000000000000', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), alipayPublicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() });
    assert.equal(sdk.checkNotifySign({ ...form }), true);
    assert.equal(sdk.checkNotifySign({ ...form, total_amount: '0.01' }), false);
    // rsa2 signs forms only: the ingress refuses a JSON body, and one that reaches a work queue anyway is parked, not looped.
    const json = await d.post({ url: `${merchant.base}/fail/0/rsa2-json`, body: { a: 1 } });
    assert.equal(json.status, 400);
    assert.equal(json.body.error.field, 'contentType');
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    const jsonPath = `/fail/0/rsa2-json-direct-${d.opts.prefix}`;
    ch.publish(`${d.opts.prefix}.work`, 'tier.0', Buffer.from(JSON.stringify({ id: 'rsa2-json-1', url: `${merchant.base}${jsonPath}`, method: 'POST', headers: {}, body: { a: 1 }, contentType: 'application/json', createdAt: Date.now() })), { persistent: true, messageId: 'rsa2-json-1' });
    await ch.waitForConfirms();
    await conn.close();
    await waitFor(async () => (await deadHeaders(d.opts.prefix)).some((h) => h.messageId === 'rsa2-json-1'), 5000, 'parked');
    const parked = (await deadHeaders(d.opts.prefix)).find((h) => h.messageId === 'rsa2-json-1')!;
    assert.equal(parked['notify-dead-reason'], 'invalid');
    assert.match(String(parked['notify-last-error']), /signing failed/);
    assert.equal(merchant.count(jsonPath), 0);
    // A form no verifier would agree on (a repeated field, another charset) fails on every try as well: refused, or
    // parked if it gets past the ingress (before, a hand-on that threw every time was requeued for ever).
    const formType = 'application/x-www-form-urlencoded';
    const repeated = await d.post({ url: `${merchant.base}/fail/0/rsa2-repeat`, body: 'a=1&a=2', contentType: formType });
    assert.deepEqual([repeated.status, repeated.body.error.field], [400, 'body']);
    const gbk = await d.post({ url: `${merchant.base}/fail/0/rsa2-gbk`, body: 'a=1', contentType: `${formType}; charset=gbk` });
    assert.deepEqual([gbk.status, gbk.body.error.field], [400, 'contentType']);
    const conn2 = await amqp.connect(AMQP_URL);
    const ch2 = await conn2.createConfirmChannel();
    const repeatPath = `/fail/0/rsa2-repeat-direct-${d.opts.prefix}`;
    ch2.publish(`${d.opts.prefix}.work`, 'tier.0', Buffer.from(JSON.stringify({ id: 'rsa2-repeat-1', url: `${merchant.base}${repeatPath}`, method: 'POST', headers: {}, body: 'a=1&a=2', contentType: formType, createdAt: Date.now() })), { persistent: true, messageId: 'rsa2-repeat-1' });
    await ch2.waitForConfirms();
    await conn2.close();
    await waitFor(async () => (await deadHeaders(d.opts.prefix)).some((h) => h.messageId === 'rsa2-repeat-1'), 5000, 'parked');
    const repeatParked = (await deadHeaders(d.opts.prefix)).find((h) => h.messageId === 'rsa2-repeat-1')!;
    assert.equal(repeatParked['notify-dead-reason'], 'invalid');
    assert.match(String(repeatParked['notify-last-error']), /appears more than once/);
    assert.equal(merchant.count(repeatPath), 0);
  });

  it('a storm of 300 malformed ingress requests gets only 4xx and the daemon stays ready', async (t: TestContext) => {
    const d = await daemon('storm', { NOTIFY_LOG_LEVEL: 'warn' });
    const statuses = new Map<number, number>();
    const note = (s: number): void => {
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
    };
    const bodies: (() => string)[] = [
      () => randomBytes(64).toString('latin1'),
      () => 'null',
      () => '[]',
      () => '[{"url":"http://x/"}]',
      () => '"just a string"',
      () => '12345',
      () => JSON.stringify({ url: 'javascript:alert(1)', body: 'a' }),
      () => JSON.stringify({ url: 'file:///etc/passwd', body: 'a' }),
      () => JSON.stringify({ url: 'gopher://127.0.0.1:6379/_FLUSHALL', body: 'a' }),
      () => JSON.stringify({ url: 'http://x/\r\nX-Injected: 1', body: 'a' }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', headers: { 'x-a': 'v\r\nx-b: w' } }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', headers: { 'bad name': 'v' } }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', headers: { host: 'evil' } }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', id: 'i'.repeat(5000) }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', id: '../../etc' }),
      () => JSON.stringify({ url: `http://x/${'a'.repeat(5000)}`, body: 'a' }),
      () => JSON.stringify({ url: 'http://x/', body: null }),
      () => JSON.stringify({ url: 'http://x/', body: [1, 2] }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', method: 'DELETE' }),
      () => JSON.stringify({ url: 'http://user:pw@x/', body: 'a' }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', success: { status: 'all' } }),
      () => JSON.stringify({ url: 'http://x/', body: 'a', headers: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`x-h${i}`, 'v'])) }),
      () => `${'['.repeat(10_000)}${']'.repeat(10_000)}`,
      () => JSON.stringify({ notifications: 'nope' }),
    ];
    const posts: Promise<void>[] = [];
    for (let i = 0; i < 240; i++) {
      const path = i % 7 === 0 ? '/v1/notifications:batch' : '/v1/notifications';
      const body = bodies[i % bodies.length]!();
      posts.push(fetch(`${d.ingressUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(async (r) => {
        await r.arrayBuffer();
        note(r.status);
      }));
    }
    // Malformed HTTP itself (CR/LF in the request line, bad header names, garbage): raw sockets.
    const raws = [
      'POST /v1/notifications\r\nX: y HTTP/1.1\r\n\r\n',
      'POST /v1/notifications HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n',
      'GARBAGE\r\n\r\n',
      'POST /v1/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
      'POST /v1/notifications HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
      `\u0000\u0001\u0002${randomBytes(100).toString('latin1')}\r\n\r\n`,
    ];
    for (let i = 0; i < 60; i++) {
      posts.push(new Promise<void>((resolve) => {
        const sock = connect(d.ingressPort, '127.0.0.1');
        let data = '';
        sock.on('data', (c) => (data += c.toString('latin1')));
        sock.on('error', () => undefined);
        sock.on('close', () => {
          const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
          note(m ? Number(m[1]) : 0);
          resolve();
        });
        sock.end(raws[i % raws.length]!, 'latin1');
        setTimeout(() => sock.destroy(), 3000).unref();
      }));
    }
    await Promise.all(posts);
    t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
    let total = 0;
    for (const [status, n] of statuses) {
      total += n;
      assert.ok(status >= 400 && status < 500, `got ${n} × ${status}`);
    }
    assert.equal(total, 300);
    assert.equal((await fetch(`${d.adminUrl}/readyz`)).status, 200);
    const st = (await d.admin<{ ingress: { restarts: number } }>('GET', '/admin/status')).body;
    assert.equal(st.ingress.restarts, 0, 'ingress never crashed');
  });

  it('garbage published straight into P.work.0 is parked `invalid` and the worker keeps its pid', async () => {
    const d = await daemon('poison', { NOTIFY_LOG_LEVEL: 'warn' });
    const before = (await d.admin<Status>('GET', '/admin/status')).body.tiers[0]!;
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    const garbage = [
      Buffer.from('not json at all'),
      Buffer.alloc(0),
      randomBytes(256),
      Buffer.from('null'),
      Buffer.from('[1,2,3]'),
      Buffer.from(JSON.stringify({ id: 'x1' })),
      Buffer.from(JSON.stringify({ id: 'x2', url: 12, body: {} })),
      Buffer.from(JSON.stringify({ id: 'x3', url: 'ftp://x/', body: 'a' })),
      Buffer.from(JSON.stringify({ id: 'x4', url: 'http://x/', body: 'a', headers: { a: 'b\r\nc' } })),
    ];
    for (const g of garbage) ch.publish(`${d.opts.prefix}.work`, 'tier.0', g, { persistent: true });
    await ch.waitForConfirms();
    await conn.close();
    await waitFor(async () => (await deadHeaders(d.opts.prefix)).length === garbage.length, 10_000, 'all parked');
    const parked = await deadHeaders(d.opts.prefix);
    assert.ok(parked.every((h) => h['notify-dead-reason'] === 'invalid'), JSON.stringify(parked.map((h) => h['notify-dead-reason'])));
    assert.ok(parked.every((h) => typeof h['notify-last-error'] === 'string' && (h['notify-last-error'] as string).length > 0));
    const afterStatus = (await d.admin<Status>('GET', '/admin/status')).body.tiers[0]!;
    assert.equal(afterStatus.pid, before.pid);
    assert.equal(afterStatus.restarts, 0);
    // and it still delivers
    const path = `/fail/0/poison-after-${d.opts.prefix}`;
    await d.post({ url: `${merchant.base}${path}`, body: 'ok' });
    await waitFor(() => merchant.count(path) === 1, 5000, 'delivery after poison');
  });

  it("a tier worker restarted after the ingress came up still refuses notifyd's own ports (loopback allowed)", async () => {
    const d = await daemon('self-restart', { NOTIFY_LOG_LEVEL: 'warn' });
    const before = (await d.admin<Status>('GET', '/admin/status')).body.tiers[0]!;
    // The ingress is up and reported its port long before: nothing but the master's word at this worker's init tells it.
    process.kill(before.pid!, 'SIGKILL');
    await waitFor(async () => {
      const t = (await d.admin<Status>('GET', '/admin/status')).body.tiers[0]!;
      return t.state === 'running' && t.pid !== null && t.pid !== before.pid;
    }, 15_000, 'tier 0 restarted');
    for (const url of [`http://127.0.0.1:${d.adminPort}/admin/dead/redrive?force=1`, `http://127.0.0.1:${d.ingressPort}/v1/notifications`]) {
      assert.equal((await d.post({ url, body: { a: 1 } })).status, 202);
    }
    await waitFor(async () => (await deadHeaders(d.opts.prefix)).length === 2, 10_000, '2 parked');
    const parked = await deadHeaders(d.opts.prefix);
    // Delivered there, each would have been answered 401/404 and gone down the ladder: parked `exhausted`.
    assert.deepEqual(parked.map((h) => h['notify-dead-reason']), ['blocked', 'blocked'], JSON.stringify(parked.map((h) => h['notify-last-error'])));
  });

  it('redrive moves N parked notifications back to tier 0 and they are delivered', async () => {
    const d = await daemon('redrive', { NOTIFY_LOG_LEVEL: 'warn' });
    // Each fails its 2 attempts (→ exhausted), then succeeds on the 3rd request after the redrive.
    const paths = Array.from({ length: 5 }, (_, i) => `/fail/2/redrive-${i}-${d.opts.prefix}`);
    for (const p of paths) assert.equal((await d.post({ url: `${merchant.base}${p}`, body: { p } })).status, 202);
    await waitFor(async () => (await deadHeaders(d.opts.prefix)).length === 5, 10_000, '5 parked');
    // The peek above returns the messages to the quorum queue asynchronously: wait until all 5 are ready again.
    await waitFor(async () => (await queueDepths(d.opts.prefix, SCHEDULE))[`${d.opts.prefix}.dead`] === 5, 5000, 'dead queue settled');
    const r = await d.admin<{ moved: number; remaining: number }>('POST', '/admin/dead/redrive?limit=3');
    assert.equal(r.status, 200);
    assert.equal(r.body.moved, 3);
    assert.equal(r.body.remaining, 2);
    await waitFor(() => paths.filter((p) => merchant.count(p) === 3).length === 3, 10_000, '3 delivered after redrive');
    const left = await deadHeaders(d.opts.prefix);
    assert.equal(left.length, 2);
    // `notifyd ctl redrive` moves the rest
    const ctl = spawnSync(process.execPath, [CLI_PATH, 'ctl', 'redrive', '--limit', '10', '--admin', d.adminUrl], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(ctl.status, 0, ctl.stderr);
    assert.equal(JSON.parse(ctl.stdout).moved, 2);
    await waitFor(() => paths.every((p) => merchant.count(p) === 3), 10_000, 'all delivered');
  });

  it('admin on 0.0.0.0 without a token: exit 78 with one clear line', () => {
    const r = spawnSync(process.execPath, [CLI_PATH, 'start'], {
      env: { PATH: process.env.PATH, NOTIFY_ADMIN_HOST: '0.0.0.0', NOTIFY_PREFIX: uniquePrefix('noauth') },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 78);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /admin\.token/);
  });

  it('admin token and ingress token are enforced; secrets never reach logs or /admin/status', async () => {
    const adminToken = `adm-${randomBytes(12).toString('hex')}`;
    const ingressToken = `ing-${randomBytes(12).toString('hex')}`;
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const d = await daemon('tokens', { NOTIFY_ADMIN_TOKEN: adminToken, NOTIFY_INGRESS_TOKEN: ingressToken, NOTIFY_SIGNING_SECRET: secret, NOTIFY_LOG_LEVEL: 'debug' });
    assert.equal((await fetch(`${d.adminUrl}/admin/status`)).status, 401);
    assert.equal((await fetch(`${d.adminUrl}/admin/status`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const status = await fetch(`${d.adminUrl}/admin/status`, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(status.status, 200);
    const statusText = await status.text();
    assert.equal((await fetch(`${d.adminUrl}/metrics`)).status, 401);
    assert.equal((await d.post({ url: `${merchant.base}/fail/0/tok`, body: 'a' })).status, 401);
    const path = `/fail/0/tok-${d.opts.prefix}`;
    const ok = await fetch(`${d.ingressUrl}/v1/notifications`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ingressToken}` }, body: JSON.stringify({ url: `${merchant.base}${path}`, body: 'a' }) });
    assert.equal(ok.status, 202);
    await waitFor(() => merchant.count(path) === 1, 5000, 'delivered');
    await new Promise((r) => setTimeout(r, 300));
    const logs = d.lines.map((l) => JSON.stringify(l)).join('\n') + d.stderr.join('');
    for (const s of [adminToken, ingressToken, secret, secret.slice(6), 'guest:guest@']) {
      assert.ok(!logs.includes(s), `logs leak ${s.slice(0, 8)}…`);
      assert.ok(!statusText.includes(s), `/admin/status leaks ${s.slice(0, 8)}…`);
    }
    assert.ok(d.lines.length > 5, 'there were logs to check');
  });
});
