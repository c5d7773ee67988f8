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

  /** Puts a notification into P.hold.0 as a deferral would: waiting since now, held until `heldUntil`; confirmed by the caller. */
  function hold(id: string, heldUntil: number): string {
    const path = `/ok/${id}`;
    const n = { id, url: `${merchant.base}${path}`, method: 'POST', headers: {}, body: { id }, contentType: 'application/json', createdAt: Date.now() };
    ch.sendToQueue(`${prefix}.hold.0`, Buffer.from(JSON.stringify(n)), {
      persistent: true,
      messageId: id,
      headers: { 'notify-attempt': 0, 'notify-deferred': 1, 'notify-waiting-since': Date.now(), 'notify-held-until': heldUntil },
    });
    return path;
  }
  const ready = async (): Promise<number> => (await ch.checkQueue(`${prefix}.hold.0`)).messageCount;

  it('a held notification is attempted once its hold is over, not before, and not only when the TTL sends it back', async () => {
    assert.equal(ttlMs, 10_000);
    const heldUntil = Date.now() + 800;
    const path = hold('held-1', heldUntil);
    await ch.waitForConfirms();
    await waitFor(() => merchant.count(path) === 1, ttlMs / 2, 'attempted well before the hold TTL');
    const at = merchant.seen(path)[0]!.at;
    // A timer may round a millisecond early; nothing should come sooner than that.
    assert.ok(at >= heldUntil - 5, `attempted ${heldUntil - at} ms before its hold was over`);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(merchant.count(path), 1, 'attempted once');
  });

  it('a paused tier does not take from its hold queue; on resume it does', async () => {
    assert.equal((await daemon.admin('POST', '/admin/tiers/0/pause')).status, 200);
    let path: string;
    try {
      path = hold('held-paused', Date.now() + 300);
      await ch.waitForConfirms();
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(merchant.count(path), 0, 'nothing attempted while paused');
      assert.equal(await ready(), 1, 'left in the queue');
    } finally {
      assert.equal((await daemon.admin('POST', '/admin/tiers/0/resume')).status, 200);
    }
    await waitFor(() => merchant.count(path) === 1, ttlMs / 2, 'attempted after resume');
  });

  it('what a tier holds in memory goes back to the hold queue when it pauses, unattempted, and is attempted after resume, each once', async () => {
    const paths: string[] = [];
    const until = Date.now() + 8000;
    for (let i = 0; i < 20; i++) paths.push(hold(`held-many-${i}`, until));
    await ch.waitForConfirms();
    await waitFor(async () => (await ready()) === 0, 5000, 'taken from the queue (held in memory)');
    assert.equal((await daemon.admin('POST', '/admin/tiers/0/pause')).status, 200);
    try {
      await waitFor(async () => (await ready()) === 20, 3000, 'given back to the hold queue');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(paths.filter((p) => merchant.count(p) > 0).length, 0, 'nothing attempted while paused');
    } finally {
      assert.equal((await daemon.admin('POST', '/admin/tiers/0/resume')).status, 200);
    }
    await waitFor(() => paths.every((p) => merchant.count(p) === 1), 15_000, 'each attempted after resume');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(paths.map((p) => merchant.count(p)), paths.map(() => 1), 'each once');
  });
});
