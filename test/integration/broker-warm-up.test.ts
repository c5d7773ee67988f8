// The tier warm-up through the broker (issue 18, src/tier/broker-warm-up.ts)
// on the real RabbitMQ: it handles its count through private queues of its own
// and leaves none behind, touches no queue of the topology, ends when its
// worker stops, and a broken connection only ends it (never throws). Then in a
// real daemon: tier 1 warms up through the broker before it consumes.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import amqp, { type ChannelModel } from 'amqplib';
import { AMQP_URL, DaemonProcess, deletePrefix, queueDepths, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';
import { namesFor } from '../../src/broker/topology.js';
import { loadConfig } from '../../src/core/config.js';
import { createSigner } from '../../src/delivery/signing.js';
import { MerchantSigners } from '../../src/merchants/signers.js';
import { workerV8Flags } from '../../src/supervisor/worker-flags.js';
import { warmUpThroughBroker } from '../../src/tier/broker-warm-up.js';
import { gateOptionsOf } from '../../src/tier/origin-gate.js';

const SCHEDULE = '0s,200ms,400ms';

/**
 * Whether a queue exists: a passive declare on a channel of its own. Only a
 * 404 means gone; another connection's exclusive queue answers 405 (there).
 */
async function exists(conn: ChannelModel, queue: string): Promise<boolean> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  try {
    await ch.checkQueue(queue);
    await ch.close();
    return true;
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (code === 404) return false;
    if (code === 405) return true;
    throw err;
  }
}

describe('tier warm-up through the broker (real RabbitMQ)', () => {
  const prefixes: string[] = [];
  const conns: ChannelModel[] = [];
  /** A connection of the test's own to look with, and a warm-up whose connections are recorded in `made`. */
  const setup = async (): Promise<{ conn: ChannelModel; prefix: string; made: ChannelModel[]; run: (count: number, stop?: AbortSignal) => ReturnType<typeof warmUpThroughBroker> }> => {
    const prefix = uniquePrefix('bwarm');
    prefixes.push(prefix);
    const config = loadConfig({ configFile: null, env: { NOTIFY_PREFIX: prefix, NOTIFY_SCHEDULE: SCHEDULE, NOTIFY_LOG_LEVEL: 'silent' } });
    const conn = await amqp.connect(AMQP_URL);
    conns.push(conn);
    const made: ChannelModel[] = [];
    const connect = async (): Promise<ChannelModel> => {
      const c = await amqp.connect(AMQP_URL);
      made.push(c);
      return c;
    };
    const signers = { signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing) };
    const run = (count: number, stop = new AbortController().signal) =>
      warmUpThroughBroker(connect, config, 1, gateOptionsOf(config), signers, { count, budgetMs: 10_000, prefetch: 64 }, stop);
    return { conn, prefix, made, run };
  };

  /** Whether a connection was closed (amqplib: no more channels can be made on it). */
  const isClosed = async (c: ChannelModel): Promise<boolean> => {
    try {
      await (await c.createChannel()).close();
      return false;
    } catch {
      return true;
    }
  };

  after(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    for (const p of prefixes) await deletePrefix(p, SCHEDULE);
  });

  it('handles its count on a connection of its own through private queues under the prefix, and leaves neither', async () => {
    const { conn, prefix, made, run } = await setup();
    const r = await run(300);
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.attempts, 300);
    const n = namesFor(prefix);
    assert.deepEqual(r.queues.map((q) => q.split('.').pop()), ['work', 'wait', 'sink']);
    for (const q of r.queues) {
      assert.ok(q.startsWith(`${prefix}.warm-up.1.${process.pid}-`), q);
      assert.equal(await exists(conn, q), false, q);
    }
    // No queue of the topology was declared or fed: the hand-ons went to the private sink.
    for (const tier of [0, 1, 2]) {
      assert.equal(await exists(conn, n.workQueue(tier)), false);
      assert.equal(await exists(conn, n.waitQueue(tier)), false);
    }
    assert.equal(await exists(conn, n.dead), false);
    assert.equal(made.length, 1);
    assert.equal(await isClosed(made[0]!), true, 'its connection is closed');
  });

  it('does nothing for a count of 0, and ends early when its worker stops, cleaning up', async () => {
    const { conn, prefix, made, run } = await setup();
    assert.deepEqual(await run(0), { attempts: 0, ms: 0, queues: [] });
    assert.equal(made.length, 0, 'no connection for nothing');
    const stop = new AbortController();
    const started = Date.now();
    const pending = run(100_000, stop.signal);
    setTimeout(() => stop.abort(), 300);
    const r = await pending;
    assert.equal(r.error, undefined, String(r.error));
    assert.ok(r.attempts < 100_000, `${r.attempts}`);
    assert.ok(Date.now() - started < 8000, 'ended with its worker, not at its budget');
    assert.equal(r.queues.length, 3);
    for (const q of r.queues) assert.ok(q.startsWith(`${prefix}.warm-up.`) && !(await exists(conn, q)), q);
    assert.equal(await isClosed(made[0]!), true);
  });

  it('a connection that comes only after its worker stopped is closed, not kept', async () => {
    const prefix = uniquePrefix('bwarm');
    prefixes.push(prefix);
    const config = loadConfig({ configFile: null, env: { NOTIFY_PREFIX: prefix, NOTIFY_SCHEDULE: SCHEDULE, NOTIFY_LOG_LEVEL: 'silent' } });
    let late: ChannelModel | null = null;
    // A connect slower than the stop: the warm-up has ended (and torn down) before it resolves.
    const connect = async (): Promise<ChannelModel> => {
      await new Promise((r) => setTimeout(r, 800));
      late = await amqp.connect(AMQP_URL);
      return late;
    };
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 100);
    const signers = { signer: createSigner(config.signing), merchantSigners: new MerchantSigners(config.signing) };
    const r = await warmUpThroughBroker(connect, config, 1, gateOptionsOf(config), signers, { count: 100, budgetMs: 10_000, prefetch: 64 }, stop.signal);
    assert.equal(r.attempts, 0);
    await waitFor(() => late !== null, 5000, 'the late connect');
    await waitFor(async () => isClosed(late!), 5000, 'the late connection closed');
  });

  it('its connection lost under it ends it, never a throw, and nothing of it goes on afterwards', async () => {
    const { made, run } = await setup();
    const pending = run(100_000);
    setTimeout(() => void made[0]?.close().catch(() => undefined), 300);
    const started = Date.now();
    const r = await pending;
    assert.ok(r.attempts < 100_000);
    assert.ok(Date.now() - started < 9000, 'ended with its connection, not at its budget');
    // Its attempts' hand-ons see a closed link and give up: no retry loop keeps this process (and the test file) alive.
  });

  it('a daemon: tier 1 warms up through the broker before it consumes, and runs without the memory reducer; nothing reaches a merchant or stays on the broker', async () => {
    const merchant = new MerchantStub();
    await merchant.start();
    const prefix = uniquePrefix('bwarmd');
    prefixes.push(prefix);
    const d = await new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_DELIVERY_WARM_UP_BROKER: '500' } }).ready(30_000);
    try {
      await waitFor(() => d.find('tier worker warmed up through the broker').length === 1, 20_000, 'tier 1 warmed up through the broker');
      const line = d.find('tier worker warmed up through the broker')[0]!;
      assert.deepEqual([line.tier, line.attempts], [1, 500]);
      // Before it consumes: its line comes before tier 1's 'connected' (logged once consuming on its own connection;
      // both from the one process, so in order). Waited for: tier 1 may not have connected yet.
      const isConnected = (l: { msg?: string; tier?: unknown }): boolean => l.msg === 'tier worker connected' && l.tier === 1;
      await waitFor(() => d.lines.some(isConnected), 20_000, 'tier 1 connected');
      assert.ok(d.lines.findIndex(isConnected) > d.lines.indexOf(line), 'warmed up before consuming');
      // Only the warmed tier does it.
      assert.equal(d.find('tier worker warmed up through the broker').filter((l) => l.tier !== 1).length, 0);
      // And only it runs without V8's memory reducer, whose idle collections would deoptimise what the warm-up compiled,
      // and with a floor under its young generation: each flag once, and no process forked after it (the next tier,
      // the ingress) inherits them.
      const { body } = await d.admin<{ tiers: { index: number; pid: number | null }[]; ingress: { pid: number | null } }>('GET', '/admin/status');
      const WARMED = workerV8Flags('tier', 1, loadConfig({ configFile: null, env: {} }));
      assert.equal(WARMED.length, 2);
      const flagsOf = async (pid: number | null | undefined): Promise<number[]> => {
        assert.equal(typeof pid, 'number', 'a running process');
        const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
        return WARMED.map((flag) => args.filter((a) => a === flag).length);
      };
      assert.deepEqual(await flagsOf(body.tiers.find((t) => t.index === 1)?.pid), [1, 1], 'tier 1');
      for (const t of body.tiers.filter((x) => x.index !== 1)) assert.deepEqual(await flagsOf(t.pid), [0, 0], `tier ${t.index}`);
      assert.deepEqual(await flagsOf(body.ingress.pid), [0, 0], 'ingress');
      const conn = await amqp.connect(AMQP_URL);
      conns.push(conn);
      const queues = line.queues as string[];
      assert.equal(queues.length, 3);
      for (const q of queues) assert.equal(await exists(conn, q), false, q);
      assert.deepEqual(Object.values(await queueDepths(prefix, SCHEDULE)).filter((v) => v !== 0), []);
      assert.equal(merchant.total, 0, 'no merchant was called');
      // And it consumes afterwards: a notification failing once is retried by tier 1.
      const path = '/fail/1/after-warm-up';
      assert.equal((await d.post({ id: 'after-warm-up', url: `${merchant.base}${path}`, body: {} })).status, 202);
      await waitFor(() => merchant.count(path) === 2, 10_000, 'retried by tier 1');
    } finally {
      await d.stop();
      await merchant.close();
    }
  });
});
