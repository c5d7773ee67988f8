// The trust holes an operator of a payment platform would find (issue 13),
// each against the real daemon and the real RabbitMQ.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import amqp from 'amqplib';
import { AMQP_URL, CLI_PATH, DaemonProcess, deletePrefix, parkedMessages, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { buildTopology } from '../../src/broker/topology.js';
import { parseSchedule } from '../../src/core/schedule.js';

const SCHEDULE = '0s,300ms,600ms';

interface Status {
  tiers: { index: number; state: string; pid: number | null; restarts: number }[];
  ingress: { pid: number | null; state: string; restarts: number; port: number | null };
}

function rabbitmqctl(...args: string[]): string {
  return execFileSync('rabbitmqctl', args, { encoding: 'utf8', timeout: 30_000 });
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

describe('trust holes (real daemon, real RabbitMQ)', () => {
  const merchant = new MerchantStub();
  const prefixes: [string, 'quorum' | 'classic'][] = [];
  const daemons: DaemonProcess[] = [];
  let tmp: string;

  async function daemon(label: string, env: Record<string, string> = {}, opts: { detached?: boolean; queueType?: 'quorum' | 'classic' } = {}): Promise<DaemonProcess> {
    const prefix = uniquePrefix(label);
    prefixes.push([prefix, opts.queueType ?? 'quorum']);
    const d = new DaemonProcess({ prefix, schedule: SCHEDULE, env, detached: opts.detached ?? false });
    daemons.push(d);
    return d.ready();
  }

  before(async () => {
    await merchant.start();
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-trust-'));
  });

  after(async () => {
    for (const d of daemons) await d.stop().catch(() => d.proc.kill('SIGKILL'));
    await merchant.close();
    for (const [p, type] of prefixes) await deletePrefix(p, SCHEDULE, type).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('the ingress on 0.0.0.0 without a producer token: exit 78 with one clear line', () => {
    const r = spawnSync(process.execPath, [CLI_PATH, 'start'], {
      env: { PATH: process.env.PATH, NOTIFY_INGRESS_HOST: '0.0.0.0', NOTIFY_PREFIX: uniquePrefix('open') },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 78);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /ingress\.tokens/);
    assert.match(lines[0]!, /NOTIFY_INGRESS_TOKENS/);
  });

  it("named producer tokens: the producer's name goes into the attempt log and the outcome event, the token nowhere", async () => {
    const billing = `tok-${randomBytes(16).toString('hex')}`;
    const shop = `tok-${randomBytes(16).toString('hex')}`;
    const d = await daemon('producers', { NOTIFY_INGRESS_TOKENS: `billing:${billing},shop:${shop}`, NOTIFY_LOG_LEVEL: 'debug' });
    const conn = await amqp.connect(AMQP_URL);
    const events: Record<string, unknown>[] = [];
    try {
      const ch = await conn.createChannel();
      const q = await ch.assertQueue('', { exclusive: true });
      await ch.bindQueue(q.queue, `${d.opts.prefix}.outcomes`, '#');
      await ch.consume(q.queue, (m) => m && events.push(JSON.parse(m.content.toString())), { noAck: true });
      const post = (token: string | null, path: string) =>
        fetch(`${d.ingressUrl}/v1/notifications`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify({ url: `${merchant.base}${path}`, body: { a: 1 } }),
        });
      assert.equal((await post(null, '/fail/0/none')).status, 401);
      assert.equal((await post('tok-wrong-wrong-wrong-wrong', '/fail/0/wrong')).status, 401);
      const path = `/fail/0/producer-${d.opts.prefix}`;
      const r = await post(billing, path);
      assert.equal(r.status, 202);
      const { id } = (await r.json()) as { id: string };
      // The outcome exchange has a binding from the first event on; the probe may skip the very first.
      await waitFor(() => d.lines.some((l) => l.msg === 'attempt' && l.id === id), 5000, 'attempt line');
      assert.equal(d.lines.find((l) => l.msg === 'attempt' && l.id === id)!.producer, 'billing');
      const path2 = `/fail/0/producer2-${d.opts.prefix}`;
      const r2 = await post(shop, path2);
      const id2 = ((await r2.json()) as { id: string }).id;
      await waitFor(() => events.some((e) => e.id === id2), 5000, 'outcome event');
      assert.equal(events.find((e) => e.id === id2)!.producer, 'shop');
      const logs = d.lines.map((l) => JSON.stringify(l)).join('\n') + d.stderr.join('');
      for (const t of [billing, shop]) assert.ok(!logs.includes(t), 'a token reached the logs');
    } finally {
      await conn.close();
    }
  });

  it('SIGHUP to the whole process group (systemctl kill -s HUP): the master reloads, no worker restarts', async () => {
    const d = await daemon('hup', {}, { detached: true });
    const before = (await d.admin<Status>('GET', '/admin/status')).body;
    d.signalGroup('SIGHUP');
    await waitFor(() => d.find('config reloaded').length === 1, 5000, 'master reloaded');
    await new Promise((r) => setTimeout(r, 1500));
    const now = (await d.admin<Status>('GET', '/admin/status')).body;
    assert.deepEqual(now.tiers.map((t) => [t.pid, t.restarts, t.state]), before.tiers.map((t) => [t.pid, 0, 'running']));
    assert.deepEqual([now.ingress.pid, now.ingress.restarts], [before.ingress.pid, 0]);
    assert.equal(d.find('worker exited unexpectedly; restarting').length, 0);
  });

  it('workers get their config over the IPC pipe: no secret in their environment', async () => {
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const adminToken = `adm-${randomBytes(12).toString('hex')}`;
    const d = await daemon('environ', { NOTIFY_SIGNING_SECRET: secret, NOTIFY_ADMIN_TOKEN: adminToken });
    const status = await fetch(`${d.adminUrl}/admin/status`, { headers: { authorization: `Bearer ${adminToken}` } });
    const s = (await status.json()) as Status;
    const pids = [...s.tiers.map((t) => t.pid!), s.ingress.pid!];
    assert.equal(pids.length, 4);
    for (const pid of pids) {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      assert.ok(!environ.includes(secret) && !environ.includes(secret.slice(6)), `worker ${pid} has the signing secret in its environment`);
      assert.ok(!environ.includes(adminToken), `worker ${pid} has the admin token in its environment`);
      assert.ok(!/(^|\0)NOTIFY_/.test(environ), `worker ${pid} has NOTIFY_* variables`);
    }
    // And it still signs: the config did arrive.
    const path = `/fail/0/environ-${d.opts.prefix}`;
    assert.equal((await d.post({ url: `${merchant.base}${path}`, body: 'x', contentType: 'text/plain' })).status, 202);
    await waitFor(() => merchant.count(path) === 1, 5000, 'delivered');
    assert.match(String(merchant.seen(path)[0]!.headers['webhook-signature']), /^v1,/);
  });

  it('every request carries webhook-id, whatever the signing scheme (here none)', async () => {
    const d = await daemon('webhookid');
    const path = `/fail/0/wid-${d.opts.prefix}`;
    const r = await d.post({ id: 'order-20240001', url: `${merchant.base}${path}`, body: { a: 1 } });
    assert.equal(r.status, 202);
    await waitFor(() => merchant.count(path) === 1, 5000, 'delivered');
    const h = merchant.seen(path)[0]!.headers;
    assert.equal(h['webhook-id'], 'order-20240001');
    assert.equal(h['webhook-signature'], undefined, 'scheme none signs nothing');
  });

  it('a token-less ingress refuses what a web page could make a browser post to it; other clients and local pages are served', async () => {
    const d = await daemon('browser');
    const path = `/fail/0/browser-${d.opts.prefix}`;
    // node:http, because fetch will not let a caller set Sec-Fetch-Site or Origin.
    const post = (headers: Record<string, string>, id: string): Promise<{ status: number; code?: string }> =>
      new Promise((resolve, reject) => {
        const body = JSON.stringify({ id, url: `${merchant.base}${path}`, body: { a: 1 } });
        const req = request({ host: '127.0.0.1', port: d.ingressPort, method: 'POST', path: '/v1/notifications', headers: { 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, code: (JSON.parse(text) as { error?: { code: string } }).error?.code }));
        });
        req.on('error', reject);
        req.end(body);
      });
    // What a page's fetch with a Blob body sends: no Content-Type, no preflight.
    assert.deepEqual(await post({ 'sec-fetch-site': 'cross-site', origin: 'https://shop.attacker.example' }, 'forged-1'), { status: 403, code: 'FORBIDDEN' });
    assert.deepEqual(await post({ origin: 'https://shop.attacker.example' }, 'forged-2'), { status: 403, code: 'FORBIDDEN' }, 'an older browser, Origin only');
    assert.deepEqual(await post({ 'sec-fetch-site': 'same-origin', host: `rebound.attacker.example:${d.ingressPort}` }, 'forged-3'), { status: 403, code: 'FORBIDDEN' }, 'a name rebound to 127.0.0.1');
    assert.deepEqual(await post({ host: `rebound.attacker.example:${d.ingressPort}` }, 'forged-4'), { status: 403, code: 'FORBIDDEN' }, 'an older browser through a rebound name: nothing but Host');
    assert.equal((await post({ 'content-type': 'application/json' }, 'curl-1')).status, 202, 'not a browser');
    assert.equal((await post({ 'sec-fetch-site': 'same-origin', origin: `http://127.0.0.1:${d.ingressPort}` }, 'local-1')).status, 202, 'a page on a loopback name');
    await waitFor(() => merchant.count(path) === 2, 5000, 'the two served delivered');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(merchant.seen(path).map((x) => x.headers['webhook-id']).sort(), ['curl-1', 'local-1'], 'nothing forged reached the merchant');
  });

  it('a direct AMQP publish with a Host: header is parked invalid at once; the merchant is never called', async () => {
    const d = await daemon('direct');
    const path = `/fail/0/direct-${d.opts.prefix}`;
    const conn = await amqp.connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      const cases = [
        { id: 'host-1', url: `${merchant.base}${path}`, body: { a: 1 }, headers: { Host: 'evil.example' } },
        { id: 'sig-1', url: `${merchant.base}${path}`, body: { a: 1 }, headers: { 'Webhook-Signature': 'v1,forged' } },
        { id: 'te-1', url: `${merchant.base}${path}`, body: { a: 1 }, headers: { 'Transfer-Encoding': 'chunked' } },
        { id: 'utf-1', url: `${merchant.base}${path}`, body: { a: 1 }, headers: { 'x-note': '付款' } },
        { id: 'long-1', url: `${merchant.base}${path}?${'x'.repeat(3000)}`, body: { a: 1 } },
      ];
      for (const n of cases) {
        ch.publish(`${d.opts.prefix}.work`, 'tier.0', Buffer.from(JSON.stringify(n)), { messageId: n.id, persistent: true, headers: { 'notify-attempt': 0 } });
      }
      await ch.waitForConfirms();
      await waitFor(async () => (await parkedMessages(d.opts.prefix)).length === cases.length, 10_000, 'all parked');
      const dead = await parkedMessages(d.opts.prefix);
      for (const m of dead) {
        assert.equal(m.headers['notify-dead-reason'], 'invalid', m.id);
        assert.equal(Number(m.headers['notify-attempt']), 0, `${m.id} parked at once, not down the ladder`);
      }
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(merchant.count(path), 0, 'the merchant was never called');
      // The ingress refuses the same values with 400 instead of accepting them.
      for (const n of cases) {
        const { id: _id, ...rest } = n;
        assert.equal((await d.post(rest)).status, 400, JSON.stringify(rest).slice(0, 80));
      }
    } finally {
      await conn.close();
    }
  });

  it('a hand-on no queue takes (its wait queue deleted): the merchant is called once, not once a second; it goes on when the queue is back', async (t: TestContext) => {
    const d = await daemon('handon');
    const topo = buildTopology(d.opts.prefix, parseSchedule(SCHEDULE), 'quorum');
    const wait1 = topo.queues.find((q) => q.name === `${d.opts.prefix}.wait.1`)!;
    const conn = await amqp.connect(AMQP_URL);
    const path = `/fail/1/handon-${d.opts.prefix}`;
    try {
      const ch = await conn.createChannel();
      await ch.deleteQueue(wait1.name);
      assert.equal((await d.post({ url: `${merchant.base}${path}`, body: { a: 1 } })).status, 202);
      await waitFor(() => merchant.count(path) === 1, 5000, 'first attempt');
      await new Promise((r) => setTimeout(r, 3500));
      assert.equal(merchant.count(path), 1, 'the merchant was called again while the hand-on failed');
      const metrics = (await d.admin<string>('GET', '/metrics')).body;
      assert.match(metrics, /notify_handon_failures_total\{[^}]*reason="unroutable"[^}]*\} [1-9]/);
      assert.ok(d.lines.some((l) => /did not take a hand-on \(unroutable\)/.test(String(l.msg))));
      t.diagnostic(`merchant calls while the hand-on failed: ${merchant.count(path)}`);
      await ch.assertQueue(wait1.name, { durable: true, arguments: { ...wait1.arguments } });
      await ch.close();
    } finally {
      await conn.close();
    }
    await waitFor(() => merchant.count(path) === 2, 15_000, 'second attempt once the queue is back');
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(merchant.count(path), 2, 'exactly the schedule: one attempt per tier');
  });

  it('a blocked broker (memory alarm): 503 BROKER_BLOCKED within 100 ms, ingress memory bounded, ingress readiness 503, the master\'s dead-queue scans bounded; all back when it clears', async (t: TestContext) => {
    const d = await daemon('blocked');
    const status = (await d.admin<Status>('GET', '/admin/status')).body;
    const ingressPid = status.ingress.pid!;
    const watermark = /([\d.]+)\s*$/.exec(rabbitmqctl('eval', 'vm_memory_monitor:get_vm_memory_high_watermark().').trim())?.[1] ?? '0.4';
    const body = JSON.stringify({ url: `${merchant.base}/fail/0/blocked`, body: 'x'.repeat(64 * 1024), contentType: 'text/plain' });
    const post = async (): Promise<{ status: number; code?: string; ms: number }> => {
      const started = performance.now();
      const r = await fetch(`${d.ingressUrl}/v1/notifications`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const j = (await r.json()) as { error?: { code: string } };
      return { status: r.status, ...(j.error ? { code: j.error.code } : {}), ms: performance.now() - started };
    };
    // One parked notification, for a redrive during the alarm to find.
    const parkedPath = `/status/410/parked-${d.opts.prefix}`;
    assert.equal((await d.post({ url: `${merchant.base}${parkedPath}`, body: 'x', contentType: 'text/plain' })).status, 202);
    await waitFor(async () => (await d.admin<{ total: number }>('GET', '/admin/dead')).body.total === 1, 10_000, 'parked');
    rabbitmqctl('set_vm_memory_high_watermark', '0.0000001');
    try {
      await new Promise((r) => setTimeout(r, 2000)); // the alarm is raised
      // The master's scans do not wait out the alarm (with every scan queued behind them). The broker tells a
      // connection it is blocked only once it publishes: the first scan's first publish is the master's, so that
      // scan fails on its confirm deadline; those after it are refused at once.
      const within = <T>(p: Promise<T>): Promise<T> => Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 15 s')), 15_000).unref())]);
      const scan = await within(d.admin<{ error?: { code: string } }>('POST', '/admin/dead/redrive?limit=10'));
      assert.equal(scan.status, 503, JSON.stringify(scan.body));
      assert.ok(['BROKER_CONFIRM_TIMEOUT', 'BROKER_BLOCKED'].includes(scan.body.error?.code ?? ''), JSON.stringify(scan.body));
      for (const [method, path] of [['GET', '/admin/dead'], ['POST', '/admin/dead/redrive?limit=10']] as const) {
        const r = await within(d.admin<{ error?: { code: string } }>(method, path));
        assert.deepEqual([r.status, r.body.error?.code], [503, 'BROKER_BLOCKED'], `${method} ${path}`);
      }
      // A connection opened first (kept alive for the POST): the bound is on the ingress's answer, not on a
      // client's TCP handshake on a busy machine (CI once measured 101.9 ms with both in it).
      await (await fetch(`${d.ingressUrl}/healthz`)).arrayBuffer();
      const first = await post();
      assert.deepEqual([first.status, first.code], [503, 'BROKER_BLOCKED']);
      assert.ok(first.ms < 100, `first answer took ${first.ms.toFixed(1)} ms`);
      const rssBefore = rssKiB(ingressPid);
      const flood = await Promise.all(Array.from({ length: 1500 }, () => post()));
      const rssAfter = rssKiB(ingressPid);
      assert.ok(flood.every((r) => r.status === 503 && (r.code === 'BROKER_BLOCKED' || r.code === 'OVERLOADED')), JSON.stringify(flood.find((r) => r.status !== 503)));
      const slowest = Math.max(...flood.map((r) => r.ms));
      t.diagnostic(`first 503 in ${first.ms.toFixed(1)} ms; 1500 × 64 KiB while blocked: ingress RSS ${rssBefore} → ${rssAfter} KiB; slowest answer ${slowest.toFixed(0)} ms (queued behind the others client-side)`);
      assert.ok(rssAfter - rssBefore < 64 * 1024, `ingress RSS grew by ${rssAfter - rssBefore} KiB for ${1500 * 64} KiB offered`);
      const ready = await fetch(`${d.ingressUrl}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(JSON.stringify(await ready.json()), /blocks publishing/);
    } finally {
      rabbitmqctl('set_vm_memory_high_watermark', watermark);
    }
    await waitFor(async () => (await fetch(`${d.ingressUrl}/readyz`)).status === 200, 15_000, 'ingress ready again');
    // The move the broker took during the alarm was not confirmed in time, so its original went back too: at least once.
    const moved = await d.admin<{ moved: number }>('POST', '/admin/dead/redrive?limit=10');
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    await waitFor(() => merchant.count(parkedPath) >= 2, 10_000, 'redriven once the alarm cleared');
    const path = `/fail/0/unblocked-${d.opts.prefix}`;
    assert.equal((await d.post({ url: `${merchant.base}${path}`, body: 'x', contentType: 'text/plain' })).status, 202);
    await waitFor(() => merchant.count(path) === 1, 10_000, 'delivered after the alarm');
  });

  it("the ingress's readiness depends on the ingress only: a tier in backoff makes /readyz 503, the ingress /readyz stays 200", async () => {
    const cfg = join(tmp, 'slow-restart.json');
    writeFileSync(cfg, JSON.stringify({ supervisor: { restartBase: '4s' } }));
    const d = await daemon('lbready', { NOTIFY_CONFIG: cfg });
    const s = (await d.admin<Status>('GET', '/admin/status')).body;
    process.kill(s.tiers[1]!.pid!, 'SIGKILL');
    await waitFor(async () => (await d.readyz()) === 503, 3000, 'daemon not ready');
    const daemonReady = await d.admin<{ reasons: string[] }>('GET', '/readyz');
    assert.ok(daemonReady.body.reasons.some((r) => /tier-1 (backoff|starting)/.test(r)), JSON.stringify(daemonReady.body));
    const ingressReady = await fetch(`${d.ingressUrl}/readyz`);
    assert.equal(ingressReady.status, 200);
    assert.deepEqual(await ingressReady.json(), { ready: true, reasons: [] });
    await d.ready(15_000);
  });

  it("no delivery reaches notifyd's own admin or ingress port, even with loopback allowed", async () => {
    const d = await daemon('self');
    const metricsBefore = (await d.admin<string>('GET', '/metrics')).body;
    const ingress202 = (text: string): number => Number(/notify_ingress_requests_total\{status="202"\} (\d+)/.exec(text)?.[1] ?? 0);
    const viaAdmin = await d.post({ url: `http://127.0.0.1:${d.adminPort}/admin/dead/redrive?force=1&limit=100`, body: 'x', contentType: 'text/plain' });
    const viaIngress = await d.post({ url: `http://localhost:${d.ingressPort}/v1/notifications`, body: { url: 'http://x.example/', body: 'loop' } });
    assert.deepEqual([viaAdmin.status, viaIngress.status], [202, 202]);
    await waitFor(async () => (await parkedMessages(d.opts.prefix)).length === 2, 10_000, 'both parked');
    const dead = await parkedMessages(d.opts.prefix);
    for (const m of dead) {
      assert.equal(m.headers['notify-dead-reason'], 'blocked', m.id);
      assert.match(String(m.headers['notify-last-error']), /own admin or ingress port/);
      assert.equal(m.headers['notify-redriven'], undefined, 'nothing was redriven by a forged admin call');
    }
    const metricsAfter = (await d.admin<string>('GET', '/metrics')).body;
    assert.equal(ingress202(metricsAfter), ingress202(metricsBefore) + 2, 'the ingress accepted only the two test requests');
  });

  it('queueType classic is warned about at start-up, in one line', async () => {
    const d = await daemon('classic', { NOTIFY_QUEUE_TYPE: 'classic' }, { queueType: 'classic' });
    const warnings = d.lines.filter((l) => /at-most-once/.test(String(l.msg)));
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.level, 'warn');
  });
});
