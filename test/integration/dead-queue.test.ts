// GET /admin/dead against the real daemon and RabbitMQ: it lists what is
// parked, by reason, without consuming anything and without a requeue (the
// copies it leaves behind were never delivered); a listing of the whole queue
// keeps its order, a shorter one turns it by its limit; listings and redrives
// run one at a time; what the broker dead-lettered itself keeps its reason.
// And redrive moves each parked notification at most once per call.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';

const SCHEDULE = '0s,200ms';

interface Listing {
  total: number;
  byReason: Record<string, number>;
  byMerchant: Record<string, number>;
  messages: { id: string; reason: string; tier: number | null; attempts: number | null; lastError: string | null; deadAt: number | null; url: string | null; redriven?: number }[];
}

interface Peeked {
  id: string;
  redelivered: boolean;
  headers: Record<string, unknown>;
}

/**
 * Every message of P.dead in queue order, read once and given back by closing
 * the channel (test-side only). A quorum queue takes them back asynchronously,
 * so this waits until they are all ready again, or the next step would see
 * fewer.
 */
async function peek(prefix: string): Promise<Peeked[]> {
  const conn = await amqp.connect(AMQP_URL);
  const out: Peeked[] = [];
  try {
    const ch = await conn.createChannel();
    for (;;) {
      const m = await ch.get(`${prefix}.dead`, { noAck: false });
      if (!m) break;
      out.push({ id: String(m.properties.messageId), redelivered: m.fields.redelivered, headers: m.properties.headers ?? {} });
    }
    await ch.close();
  } finally {
    await conn.close();
  }
  await waitFor(async () => (await deadCount(prefix)) === out.length, 10_000, 'peeked messages back in P.dead');
  return out;
}

async function deadCount(prefix: string): Promise<number> {
  const conn = await amqp.connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    return (await ch.checkQueue(`${prefix}.dead`)).messageCount;
  } finally {
    await conn.close();
  }
}

describe('GET /admin/dead (real daemon, real RabbitMQ)', () => {
  const merchant = new MerchantStub();
  const prefix = uniquePrefix('deadlist');
  let d: DaemonProcess;
  const list = async (limit?: number): Promise<Listing> => {
    const r = await d.admin<Listing>('GET', limit === undefined ? '/admin/dead' : `/admin/dead?limit=${limit}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };

  /** Pauses tier `i` and waits until its worker says so (the admin call answers before). */
  const pauseTier = async (i: number): Promise<void> => {
    assert.equal((await d.admin('POST', `/admin/tiers/${i}/pause`)).status, 200);
    await waitFor(async () => (await d.admin<{ tiers: { state: string }[] }>('GET', '/admin/status')).body.tiers[i]!.state === 'paused', 5000, `tier ${i} paused`);
  };

  before(async () => {
    await merchant.start();
    d = await new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_LOG_LEVEL: 'warn' } }).ready();
    // Five parked by the tiers: three 410s (parked at once), one exhausted, one unreadable (invalid).
    for (let i = 0; i < 3; i++) assert.equal((await d.post({ id: `gone-${i}`, url: `${merchant.base}/status/410/gone-${i}-${prefix}`, body: { i } })).status, 202);
    assert.equal((await d.post({ id: 'tired-0', url: `${merchant.base}/status/500/tired-${prefix}`, body: 'x' })).status, 202);
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    ch.publish(`${prefix}.work`, 'tier.0', Buffer.from('not json'), { persistent: true, messageId: 'garbage-0' });
    await ch.waitForConfirms();
    await conn.close();
    await waitFor(async () => (await deadCount(prefix)) === 5, 15_000, '5 parked');
  });

  after(async () => {
    await d?.stop().catch(() => d.proc.kill('SIGKILL'));
    await merchant.close();
    await deletePrefix(prefix, SCHEDULE).catch(() => undefined);
  });

  it('lists every parked notification with its reason, tier, attempts, error, time and url; a full listing keeps the order and consumes nothing', async () => {
    const first = await list();
    assert.equal(first.total, 5);
    assert.equal(first.messages.length, 5);
    assert.deepEqual(first.byReason, { 'status-410': 3, exhausted: 1, invalid: 1 });
    assert.deepEqual(first.byMerchant, { '-': 5 }, 'none of these names a merchant');
    const byId = new Map(first.messages.map((m) => [m.id, m]));
    assert.deepEqual([...byId.keys()].sort(), ['garbage-0', 'gone-0', 'gone-1', 'gone-2', 'tired-0']);
    const gone = byId.get('gone-1')!;
    assert.equal(gone.reason, 'status-410');
    assert.equal(gone.tier, 0);
    assert.equal(gone.attempts, 1);
    assert.match(gone.lastError ?? '', /410/);
    assert.equal(gone.url, `${merchant.base}/status/410/gone-1-${prefix}`);
    assert.ok(gone.deadAt && Math.abs(Date.now() - gone.deadAt) < 60_000, String(gone.deadAt));
    const tired = byId.get('tired-0')!;
    assert.equal(tired.reason, 'exhausted');
    assert.equal(tired.tier, 1);
    assert.equal(tired.attempts, 2);
    assert.equal(byId.get('garbage-0')!.url, null);
    assert.equal(byId.get('garbage-0')!.attempts, 0, 'parked invalid before any attempt');

    // Listed again: the same messages in the same order.
    const second = await list(1000);
    assert.deepEqual(second.messages.map((m) => m.id), first.messages.map((m) => m.id));
    assert.equal(second.total, 5);

    // What is in the queue now: the same five, in that order, and none of them was ever requeued
    // (a copy is a fresh message; a nack/requeue would show as redelivered).
    const inQueue = await peek(prefix);
    assert.deepEqual(inQueue.map((m) => m.id), first.messages.map((m) => m.id));
    assert.ok(inQueue.every((m) => m.redelivered === false), JSON.stringify(inQueue.map((m) => [m.id, m.redelivered])));
    // Headers are kept (the copy carries its history for a later redrive).
    const g = inQueue.find((m) => m.id === 'gone-1')!;
    assert.equal(g.headers['notify-dead-reason'], 'status-410');
    assert.equal(g.headers['notify-dead-tier'], 0);
  });

  it('a listing shorter than the queue moves the listed ones to the tail (documented): the queue turns by the limit, nothing is lost', async () => {
    const all = (await list()).messages.map((m) => m.id);
    const two = await list(2);
    assert.deepEqual(two.messages.map((m) => m.id), all.slice(0, 2));
    assert.equal(two.total, 5);
    assert.deepEqual(Object.values(two.byReason).reduce((a, n) => a + n, 0), 2, 'counts are over the listed ones');
    const after = (await list()).messages.map((m) => m.id);
    assert.deepEqual(after, [...all.slice(2), ...all.slice(0, 2)]);
  });

  it('listings and redrives run one at a time; nothing is lost or doubled', async () => {
    const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    // Asked for at about the same time (a little apart so they reach the master in this order).
    const p1 = list();
    await pause(20);
    const pr = d.admin<{ moved: number; skipped: number; remaining: number }>('POST', '/admin/dead/redrive?limit=2&force=1');
    await pause(20);
    const p2 = list();
    const [l1, r, l2] = await Promise.all([p1, pr, p2]);
    assert.equal(r.status, 200);
    assert.equal(r.body.moved, 2);
    // `remaining` is read after the moves; a redriven one may already be parked again.
    assert.ok(r.body.remaining >= 3 && r.body.remaining <= 5, String(r.body.remaining));
    for (const l of [l1, l2]) {
      assert.ok(l.messages.length >= 3 && l.messages.length <= 5, String(l.messages.length));
      assert.equal(new Set(l.messages.map((m) => m.id)).size, l.messages.length, 'no id twice in a listing');
    }
    // The 2 redriven fail again (410, invalid) and come back: five, once each.
    await waitFor(async () => (await deadCount(prefix)) === 5, 15_000, 'the redriven two parked again');
    const final = await list();
    assert.deepEqual(final.messages.map((m) => m.id).sort(), ['garbage-0', 'gone-0', 'gone-1', 'gone-2', 'tired-0']);
    assert.equal(final.messages.filter((m) => m.redriven === 1).length, 2);
  });

  it('a message the broker dead-lettered itself is listed as broker-<reason>, and its copy keeps that reason', async () => {
    // Tier 1 paused, a message on its work queue rejected without requeue: the broker dead-letters it into P.dead.
    await pauseTier(1);
    const conn = await amqp.connect(AMQP_URL);
    try {
      const ch = await conn.createConfirmChannel();
      const body = JSON.stringify({ id: 'rejected-0', url: `${merchant.base}/status/200/rej-${prefix}`, body: 'x', createdAt: Date.now() });
      ch.publish(`${prefix}.work`, 'tier.1', Buffer.from(body), { persistent: true, messageId: 'rejected-0', headers: { 'notify-attempt': 1 } });
      await ch.waitForConfirms();
      let m: amqp.GetMessage | false = false;
      await waitFor(async () => Boolean((m = await ch.get(`${prefix}.work.1`, { noAck: false }))), 5000, 'the message on work.1');
      ch.nack(m as unknown as amqp.Message, false, false);
      await waitFor(async () => (await deadCount(prefix)) === 6, 10_000, 'dead-lettered by the broker');
    } finally {
      await conn.close();
    }
    const listing = await list();
    const rej = listing.messages.find((x) => x.id === 'rejected-0');
    assert.ok(rej, JSON.stringify(listing.messages.map((x) => x.id)));
    assert.equal(rej.reason, 'broker-rejected');
    assert.equal(rej.tier, 1);
    assert.equal(rej.url, `${merchant.base}/status/200/rej-${prefix}`);
    assert.equal(listing.byReason['broker-rejected'], 1);
    const copy = (await peek(prefix)).find((x) => x.id === 'rejected-0')!;
    assert.equal(copy.headers['notify-dead-reason'], 'broker-rejected', 'x-death does not survive a republish; its reason does');
    assert.equal(typeof copy.headers['notify-dead-at'], 'number');
    assert.equal((await d.admin('POST', '/admin/tiers/1/resume')).status, 200);
  });

  it('a redrive moves each parked notification once, even those that fail again at once and are parked behind the others', async () => {
    const before = await list();
    const goneBefore = [0, 1, 2].map((i) => merchant.count(`/status/410/gone-${i}-${prefix}`));
    const r = await d.admin<{ moved: number; skipped: number; remaining: number }>('POST', '/admin/dead/redrive?limit=100&force=1');
    assert.equal(r.status, 200);
    assert.equal(r.body.moved, before.total, 'each once, however large the limit');
    const gone = (): number[] => [0, 1, 2].map((i) => merchant.count(`/status/410/gone-${i}-${prefix}`));
    await waitFor(() => gone().every((n, i) => n >= goneBefore[i]! + 1), 10_000, 'the 410s tried again');
    await new Promise((res) => setTimeout(res, 500));
    assert.deepEqual(gone(), goneBefore.map((n) => n + 1), 'each 410 merchant called once more, not once per pass');
  });

  it('limit is validated', async () => {
    for (const bad of ['0', '1001', 'ten']) {
      const r = await d.admin<{ error: { code: string } }>('GET', `/admin/dead?limit=${bad}`);
      assert.equal(r.status, 400, bad);
      assert.equal(r.body.error.code, 'VALIDATION');
    }
  });

  it('a redriven notification waits afresh: the wait budget it spent before it was parked is not carried to tier 0 (stop 22 review)', async () => {
    // Tier 0 paused, so the redriven copies stay on P.work.0 to be read.
    await pauseTier(0);
    try {
      const conn = await amqp.connect(AMQP_URL);
      try {
        const ch = await conn.createConfirmChannel();
        // Parked on its last tier after waiting for a saturated origin: its headers still say since when.
        const body = JSON.stringify({ id: 'waited-0', url: `${merchant.base}/status/200/waited-${prefix}`, body: 'x', createdAt: Date.now() });
        const headers = { 'notify-attempt': 1, 'notify-dead-reason': 'exhausted', 'notify-dead-at': Date.now() - 1000, 'notify-dead-tier': 1, 'notify-dead-attempts': 2, 'notify-deferred': 3, 'notify-waiting-since': Date.now() - 60_000 };
        ch.sendToQueue(`${prefix}.dead`, Buffer.from(body), { persistent: true, messageId: 'waited-0', headers });
        await ch.waitForConfirms();
        const r = await d.admin<{ moved: number }>('POST', '/admin/dead/redrive?limit=1000&force=1');
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.ok(r.body.moved >= 1, JSON.stringify(r.body));
        let copy: amqp.GetMessage | false = false;
        const seen: amqp.GetMessage[] = [];
        await waitFor(async () => {
          for (let m = await ch.get(`${prefix}.work.0`, { noAck: false }); m; m = await ch.get(`${prefix}.work.0`, { noAck: false })) {
            seen.push(m);
            if (m.properties.messageId === 'waited-0') copy = m;
          }
          return copy !== false;
        }, 5000, 'the redriven copy on work.0');
        const h = (copy as unknown as amqp.GetMessage).properties.headers ?? {};
        assert.equal(h['notify-waiting-since'], undefined, 'its wait budget starts again in tier 0');
        assert.deepEqual([h['notify-dead-reason'], h['notify-dead-at'], h['notify-dead-tier'], h['notify-dead-attempts']], [undefined, undefined, undefined, undefined], 'its last parking is not carried');
        assert.equal(h['notify-attempt'], 0);
        assert.equal(h['notify-deferred'], 3, 'the count of deferrals is history and stays');
        for (const m of seen) ch.nack(m, false, true);
        await ch.close();
      } finally {
        await conn.close();
      }
    } finally {
      // Not an assert: a failure here must not hide the test's own.
      await d.admin('POST', '/admin/tiers/0/resume');
    }
  });
});
