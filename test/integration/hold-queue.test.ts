// A tier worker consumes its hold queue straight (src/tier/hold-buffer.ts)
// instead of waiting for the queue's TTL to dead-letter a deferred
// notification back to the work queue: against the real daemon and RabbitMQ,
// a held notification is attempted when its `notify-held-until` says, long
// before the TTL, not before; a paused tier attempts nothing from it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { AMQP_URL, DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { holdDelayMs, parseSchedule } from '../../src/core/schedule.js';

// Tier 0's wait budget is 20 s, so its hold queue's TTL is 10 s: an attempt within a few seconds did not come through it.
const SCHEDULE = '0s,20s';

describe('hold queue consumed by its tier (real daemon, real RabbitMQ)', () => {
  const merchant = new MerchantStub();
  let daemon: DaemonProcess;
  let conn: ChannelModel;
  let ch: ConfirmChannel;
  const prefix = uniquePrefix('hold');
  const ttlMs = holdDelayMs(parseSchedule(SCHEDULE), 0);

  before(async () => {
    await merchant.start();
    daemon = await new DaemonProcess({ prefix, schedule: SCHEDULE }).ready();
    conn = await amqp.connect(AMQP_URL);
    ch = await conn.createConfirmChannel();
  });

  after(async () => {
    await daemon?.stop().catch(() => undefined);
    await conn?.close().catch(() => undefined);
    await merchant.close();
    await deletePrefix(prefix, SCHEDULE);
  });

  /** Puts a notification into P.hold.0 as a deferral would: waiting since now, held until `heldUntil`. */
  async function hold(id: string, heldUntil: number): Promise<string> {
    const path = `/ok/${id}`;
    const n = { id, url: `${merchant.base}${path}`, method: 'POST', headers: {}, body: { id }, contentType: 'application/json', createdAt: Date.now() };
    ch.sendToQueue(`${prefix}.hold.0`, Buffer.from(JSON.stringify(n)), {
      persistent: true,
      messageId: id,
      headers: { 'notify-attempt': 0, 'notify-deferred': 1, 'notify-waiting-since': Date.now(), 'notify-held-until': heldUntil },
    });
    await ch.waitForConfirms();
    return path;
  }

  it('a held notification is attempted once its hold is over, not before, and not only when the TTL sends it back', async () => {
    assert.equal(ttlMs, 10_000);
    const heldUntil = Date.now() + 800;
    const path = await hold('held-1', heldUntil);
    await waitFor(() => merchant.count(path) === 1, ttlMs / 2, 'attempted well before the hold TTL');
    const at = merchant.seen(path)[0]!.at;
    // A timer may round a millisecond early; nothing should come sooner than that.
    assert.ok(at >= heldUntil - 5, `attempted ${heldUntil - at} ms before its hold was over`);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(merchant.count(path), 1, 'attempted once');
  });

  it('a paused tier gives what it holds back and attempts nothing; on resume it is attempted', async () => {
    assert.equal((await daemon.admin('POST', '/admin/tiers/0/pause')).status, 200);
    try {
      const path = await hold('held-paused', Date.now() + 300);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(merchant.count(path), 0, 'nothing attempted while paused');
    } finally {
      assert.equal((await daemon.admin('POST', '/admin/tiers/0/resume')).status, 200);
    }
    await waitFor(() => merchant.count('/ok/held-paused') === 1, ttlMs / 2, 'attempted after resume');
  });

  it('held notifications given back when the tier pauses are attempted after resume, each once', async () => {
    const paths: string[] = [];
    for (let i = 0; i < 20; i++) paths.push(await hold(`held-many-${i}`, Date.now() + 2000));
    // Taken from the queue and held in memory by now; the pause hands them back unattempted.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await daemon.admin('POST', '/admin/tiers/0/pause')).status, 200);
    try {
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(paths.filter((p) => merchant.count(p) > 0).length, 0, 'nothing attempted while paused');
    } finally {
      assert.equal((await daemon.admin('POST', '/admin/tiers/0/resume')).status, 200);
    }
    await waitFor(() => paths.every((p) => merchant.count(p) === 1), ttlMs / 2, 'each attempted after resume');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(paths.map((p) => merchant.count(p)), paths.map(() => 1), 'each once');
  });
});
