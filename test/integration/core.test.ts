// Core delivery against the real RabbitMQ and the real daemon (spawned),
// with a short schedule and a scriptable merchant stub.
import assert from 'node:assert/strict';
import { writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage, type GetMessage } from 'amqplib';
import { AMQP_URL, DaemonProcess, deletePrefix, queueDepths, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { buildTopology, declareTopology } from '../../src/broker/topology.js';
import { parseSchedule } from '../../src/core/schedule.js';

const SCHEDULE = '0s,300ms,600ms,1s';
const DELAYS = [0, 300, 600, 1000];
/** Scheduling slack: TTL expiry, dead-lettering, a consumer hop and the HTTP call. */
const SLACK_MS = 350;
const DELAY_FROM_START_MS = 300;

describe('core delivery (real daemon, real RabbitMQ)', () => {
  const prefix = uniquePrefix('core');
  const merchant = new MerchantStub();
  let daemon: DaemonProcess;
  let conn: ChannelModel;
  let ch: Channel;
  const outcomes: { key: string; body: Record<string, unknown> }[] = [];
  let tmp: string;

  before(async () => {
    await merchant.start();
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-core-'));
    const cfg = join(tmp, 'config.json');
    // A short attempt deadline so the slow-merchant case is quick (the headers timeout longer: undici runs it on a
    // coarse timer, up to ~0.5 s off, and the timing test wants the deadline's own); a retry's delay may absorb up to 300 ms of its attempt.
    writeFileSync(cfg, JSON.stringify({ delivery: { timeout: '800ms', headersTimeout: '5s', delayFromStart: `${DELAY_FROM_START_MS}ms` } }));
    daemon = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_CONFIG: cfg } });
    await daemon.ready();
    conn = await amqp.connect(AMQP_URL);
    ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, `${prefix}.outcomes`, '#');
    await ch.consume(q.queue, (m: ConsumeMessage | null) => {
      if (m) outcomes.push({ key: m.fields.routingKey, body: JSON.parse(m.content.toString()) });
    }, { noAck: true });
  });

  after(async () => {
    await daemon?.stop().catch(() => undefined);
    await conn?.close().catch(() => undefined);
    await merchant.close();
    await deletePrefix(prefix, SCHEDULE);
    rmSync(tmp, { recursive: true, force: true });
  });

  /** Parked messages, read without consuming them for good (nacked back). */
  async function deadMessages(): Promise<{ id: string; headers: Record<string, unknown> }[]> {
    const c = await conn.createChannel();
    const got: GetMessage[] = [];
    for (;;) {
      const m = await c.get(`${prefix}.dead`, { noAck: false });
      if (!m) break;
      got.push(m);
    }
    const out = got.map((m) => ({ id: String(m.properties.messageId), headers: m.properties.headers ?? {} }));
    await c.close(); // unacked → back to the queue
    return out;
  }

  async function send(body: Record<string, unknown>): Promise<string> {
    const r = await daemon.post(body);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.id as string;
  }

  it('retries on the schedule: k failures → exactly k+1 attempts, gaps match the delays', async () => {
    const path = `/fail/2/${prefix}-k2`;
    await send({ url: `${merchant.base}${path}`, body: { order: 'A1' } });
    await waitFor(() => merchant.count(path) >= 3, 10_000, '3 attempts');
    await new Promise((r) => setTimeout(r, DELAYS[3]! + SLACK_MS)); // no 4th attempt may follow
    const seen = merchant.seen(path);
    assert.equal(seen.length, 3);
    for (let i = 1; i < seen.length; i++) {
      const gap = seen[i]!.at - seen[i - 1]!.at;
      assert.ok(gap >= DELAYS[i]! - 20 && gap <= DELAYS[i]! + SLACK_MS, `gap ${i} was ${gap}ms, schedule says ${DELAYS[i]}ms`);
    }
    await waitFor(() => outcomes.some((o) => o.key === 'delivered' && (o.body.attempts as number) === 3), 5000, 'delivered outcome');
  });

  it('a notification that never succeeds is parked as exhausted with a dead outcome event', async () => {
    const path = `/status/503/${prefix}-never`;
    const id = await send({ url: `${merchant.base}${path}`, body: 'x', contentType: 'text/plain' });
    await waitFor(() => outcomes.some((o) => o.key === 'dead' && o.body.id === id), 10_000, 'dead outcome');
    assert.equal(merchant.count(path), DELAYS.length);
    const ev = outcomes.find((o) => o.body.id === id)!;
    assert.equal(ev.body.reason, 'exhausted');
    const parked = (await deadMessages()).find((m) => m.id === id);
    assert.ok(parked, 'parked on P.dead');
    assert.equal(parked.headers['notify-dead-reason'], 'exhausted');
    assert.match(String(parked.headers['notify-last-error']), /503/);
    assert.ok(Number(parked.headers['notify-first-attempt-at']) > 0);
  });

  it('bodyEquals "success" retries a 200 "ok"', async () => {
    const path = `/body/ok/${prefix}-alipay`;
    const id = await send({ url: `${merchant.base}${path}`, body: { trade_status: 'TRADE_SUCCESS' }, success: { bodyEquals: 'success' } });
    await waitFor(() => outcomes.some((o) => o.body.id === id), 10_000, 'outcome');
    assert.equal(merchant.count(path), DELAYS.length, 'every tier tried');
    assert.equal(outcomes.find((o) => o.body.id === id)!.key, 'dead');
    // and the same body with "success" is delivered at once
    const okPath = `/body/success/${prefix}-alipay-ok`;
    const id2 = await send({ url: `${merchant.base}${okPath}`, body: { a: 1 }, success: { bodyEquals: 'success' } });
    await waitFor(() => outcomes.some((o) => o.body.id === id2 && o.key === 'delivered'), 5000, 'delivered');
    assert.equal(merchant.count(okPath), 1);
  });

  it('a 410 is parked at once (non-retryable)', async () => {
    const path = `/status/410/${prefix}-gone`;
    const id = await send({ url: `${merchant.base}${path}`, body: { a: 1 } });
    await waitFor(() => outcomes.some((o) => o.body.id === id), 5000, 'outcome');
    await new Promise((r) => setTimeout(r, DELAYS[1]! + SLACK_MS));
    assert.equal(merchant.count(path), 1);
    const parked = (await deadMessages()).find((m) => m.id === id);
    assert.equal(parked?.headers['notify-dead-reason'], 'status-410');
  });

  it('a merchant slower than the timeout is retried', async () => {
    const path = `/slow/2000/1/${prefix}-slow`;
    const id = await send({ url: `${merchant.base}${path}`, body: { a: 1 } });
    await waitFor(() => outcomes.some((o) => o.body.id === id && o.key === 'delivered'), 10_000, 'delivered after timeout');
    assert.equal(merchant.count(path), 2);
  });

  it('a retry is due one delay after its attempt began, or after its hand-on less delayFromStart when the attempt took longer', async () => {
    // Measured between attempts 2 and 3 (a 600-ms rung: the 300-ms allowance is no more than half of it).
    // Answered 500 after 250 ms (within the allowance): attempt 3 comes 600 ms after attempt 2 began, not 600 ms after its answer.
    const quick = `/slowfail/250/2/${prefix}-from-start`;
    // Timed out at 800 ms (over the allowance): one delay after the hand-on less 300 ms, so about 800 + 600 - 300.
    const slow = `/slow/2000/2/${prefix}-from-start-bound`;
    await send({ url: `${merchant.base}${quick}`, body: { a: 1 } });
    await send({ url: `${merchant.base}${slow}`, body: { a: 1 } });
    await waitFor(() => merchant.count(quick) >= 3 && merchant.count(slow) >= 3, 15_000, 'third attempts');
    const gap = (path: string): number => {
      const s = merchant.seen(path);
      return s[2]!.at - s[1]!.at;
    };
    const g1 = gap(quick);
    // Counted from the answer, as before, it could not be under 250 + 600 ms.
    assert.ok(g1 >= DELAYS[2]! - 20 && g1 < 250 + DELAYS[2]! - 10, `gap after a 250-ms failure was ${g1}ms`);
    const g2 = gap(slow);
    const bound = 800 + DELAYS[2]! - DELAY_FROM_START_MS;
    // Counted from the answer it could not be under 800 + 600 ms; counted from the start alone, about 600.
    assert.ok(g2 >= bound - 40 && g2 < 800 + DELAYS[2]! - 10, `gap after a timeout was ${g2}ms (expected about ${bound}ms)`);
  });

  it('redirects are not followed (a 3xx is a failure)', async () => {
    const path = `/redirect/${prefix}-redir`;
    const id = await send({ url: `${merchant.base}${path}`, body: { a: 1 } });
    await waitFor(() => outcomes.some((o) => o.body.id === id), 10_000, 'outcome');
    assert.equal(merchant.count(path), DELAYS.length);
    assert.equal(merchant.count(`/fail/0/${prefix}-redir`), 0, 'redirect target never called');
  });

  it('form-encoded bodies arrive byte for byte, string and object', async () => {
    const raw = 'out_trade_no=20261124%2B001&subject=%E6%B5%8B%E8%AF%95&memo=a%26b%3Dc&total_amount=9.99';
    const p1 = `/fail/0/${prefix}-form-raw`;
    await send({ url: `${merchant.base}${p1}`, body: raw, contentType: 'application/x-www-form-urlencoded' });
    const p2 = `/fail/0/${prefix}-form-obj`;
    await send({ url: `${merchant.base}${p2}`, body: { subject: '测试', memo: 'a&b=c', n: 5 }, contentType: 'application/x-www-form-urlencoded' });
    await waitFor(() => merchant.count(p1) === 1 && merchant.count(p2) === 1, 5000, 'form deliveries');
    const [r1] = merchant.seen(p1);
    assert.equal(r1!.body.toString('utf8'), raw);
    assert.equal(r1!.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.match(String(r1!.headers['user-agent']), /^notifyd\//);
    const fields = new URLSearchParams(merchant.seen(p2)[0]!.body.toString('utf8'));
    assert.deepEqual(Object.fromEntries(fields), { subject: '测试', memo: 'a&b=c', n: '5' });
  });

  it('JSON bodies and custom headers arrive as sent', async () => {
    const p = `/fail/0/${prefix}-json`;
    await send({ url: `${merchant.base}${p}`, method: 'PUT', headers: { 'X-Merchant-Ref': 'r-1' }, body: { amount: 100, currency: 'CNY', note: '付款' } });
    await waitFor(() => merchant.count(p) === 1, 5000, 'json delivery');
    const [r] = merchant.seen(p);
    assert.equal(r!.method, 'PUT');
    assert.equal(r!.headers['x-merchant-ref'], 'r-1');
    assert.equal(r!.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(r!.body.toString()), { amount: 100, currency: 'CNY', note: '付款' });
  });

  it('batch ingress answers per item', async () => {
    const r = await daemon.post({ notifications: [
      { url: `${merchant.base}/fail/0/${prefix}-b1`, body: { a: 1 } },
      { url: 'ftp://nope', body: { a: 1 } },
    ] }, '/v1/notifications:batch');
    assert.equal(r.status, 207);
    assert.equal(r.body.accepted, 1);
    assert.equal(r.body.results[0].status, 202);
    assert.equal(r.body.results[1].status, 400);
    assert.equal(r.body.results[1].error.field, 'url');
    await waitFor(() => merchant.count(`/fail/0/${prefix}-b1`) === 1, 5000, 'batch item delivered');
  });

  it('bad ingress input gets 400 with a code and field; a 5 MiB body gets 413', async () => {
    const cases: [unknown, string][] = [
      [{ url: 'ftp://x/y', body: 'a' }, 'url'],
      [{ url: 'http://x/\r\nHost: evil', body: 'a' }, 'url'],
      [{ url: 'http://x/', body: 'a', headers: { 'x-a': 'b\r\nc: d' } }, 'headers.x-a'],
      [{ url: 'http://x/', body: 'a', method: 'GET' }, 'method'],
      [{ url: 'http://x/' }, 'body'],
      [{ url: 'http://x/', body: 'a', id: 'x'.repeat(500) }, 'id'],
      [[1, 2], 'notification'],
      [{ url: 'http://x/', body: 'a', createdAt: 1e23 }, 'createdAt'],
    ];
    for (const [body, field] of cases) {
      const r = await daemon.post(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'VALIDATION');
      assert.equal(r.body.error.field, field);
    }
    // Nesting deep enough to overflow JSON.stringify is an input error, not a 500.
    const deep = `{"url":"http://x/","body":{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
    const deepR = await daemon.post(deep);
    assert.equal(deepR.status, 400, JSON.stringify(deepR.body).slice(0, 200));
    assert.equal(deepR.body.error.field, 'body');
    const notJson = await daemon.post('{"url": ');
    assert.equal(notJson.status, 400);
    assert.equal(notJson.body.error.code, 'BAD_JSON');
    const big = await daemon.post({ url: 'http://x/', body: 'a'.repeat(5 * 1024 * 1024) });
    assert.equal(big.status, 413);
    assert.equal(big.body.error.code, 'BODY_TOO_LARGE');
    const r = await fetch(`${daemon.ingressUrl}/v1/notifications`, { method: 'PUT' });
    assert.equal(r.status, 405);
    // GET lists the delivery history (issue 16), which needs a database this daemon has not got.
    const list = await fetch(`${daemon.ingressUrl}/v1/notifications`, { method: 'GET' });
    assert.deepEqual([list.status, ((await list.json()) as { error: { code: string } }).error.code], [501, 'HISTORY_DISABLED']);
  });

  it('a consumer the broker cancels (its queue deleted, then declared again) consumes again', async () => {
    const c = await conn.createChannel();
    await c.deleteQueue(`${prefix}.work.0`);
    await waitFor(() => daemon.lines.some((l) => l.tier === 0 && String(l.msg).startsWith('consumer cancelled by the broker')), 10_000, 'tier 0 told of the cancel');
    // What an operator (or a daemon starting) does: declare the topology again.
    await declareTopology(conn, buildTopology(prefix, parseSchedule(SCHEDULE), 'quorum'));
    await c.close();
    const path = `/ok/${prefix}-after-cancel`;
    await send({ url: `${merchant.base}${path}`, body: { a: 1 } });
    // Before: tier 0 stayed connected and "running" with no consumer, and this never arrived.
    await waitFor(() => merchant.count(path) === 1, 30_000, 'delivered from the declared-again queue');
  });

  it('leaves no message behind once everything finished', async () => {
    await waitFor(async () => {
      const d = await queueDepths(prefix, SCHEDULE);
      return Object.entries(d).every(([q, n]) => q.endsWith('.dead') || n === 0);
    }, 10_000, 'queues empty');
  });
});
