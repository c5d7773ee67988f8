// The declared topology on the real broker: accepted as declared, idempotent,
// and what a work queue gives up on is parked on P.dead, never dropped.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { AMQP_URL, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { parseSchedule } from '../../src/core/schedule.js';
import { buildTopology, declareTopology, namesFor, withoutLeaderLocator } from '../../src/broker/topology.js';
import { WarmUpFrames } from '../../src/tier/warm-up-frames.js';
import { loadConfig } from '../../src/core/config.js';
import { warmUpExpires, warmUpMessage } from '../../src/tier/warm-up.js';

const LIMITS = loadConfig({ configFile: null, env: {} }).limits;

const SCHEDULE = '0s,200ms,3s';

describe('topology on RabbitMQ', () => {
  const prefix = uniquePrefix('topo');
  const topo = buildTopology(prefix, parseSchedule(SCHEDULE), 'quorum');
  const n = namesFor(prefix);
  let conn: ChannelModel;
  let ch: ConfirmChannel;

  before(async () => {
    conn = await amqp.connect(AMQP_URL);
    await declareTopology(conn, topo);
    ch = await conn.createConfirmChannel();
  });

  after(async () => {
    await conn?.close().catch(() => undefined);
    await deletePrefix(prefix, SCHEDULE);
  });

  it('declaring twice is a no-op (every daemon on a prefix declares it)', async () => {
    assert.deepEqual(await declareTopology(conn, topo), { withoutLeaderLocator: [] });
    for (const q of topo.queues) assert.equal((await ch.checkQueue(q.name)).queue, q.name);
  });

  it('a message a work queue dead-letters (here: rejected) is parked on P.dead', async () => {
    ch.publish(n.work, n.routingKey(0), Buffer.from('{"id":"topo-1"}'), { persistent: true, messageId: 'topo-1' });
    await ch.waitForConfirms();
    let msg: amqp.GetMessage | false = false;
    await waitFor(async () => (msg = await ch.get(n.workQueue(0), { noAck: false })) !== false, 5000, 'message in work.0');
    ch.nack(msg as unknown as amqp.GetMessage, false, false);
    let parked: amqp.GetMessage | false = false;
    await waitFor(async () => (parked = await ch.get(n.dead, { noAck: true })) !== false, 5000, 'message parked');
    assert.equal((parked as unknown as amqp.GetMessage).properties.messageId, 'topo-1');
  });

  it('a wait queue hands its message to the next work queue after its TTL', async () => {
    const t0 = Date.now();
    ch.sendToQueue(n.waitQueue(1), Buffer.from('{"id":"topo-2"}'), { persistent: true, messageId: 'topo-2' });
    await ch.waitForConfirms();
    let msg: amqp.GetMessage | false = false;
    await waitFor(async () => (msg = await ch.get(n.workQueue(1), { noAck: true })) !== false, 5000, 'message in work.1', 10);
    assert.equal((msg as unknown as amqp.GetMessage).properties.messageId, 'topo-2');
    assert.ok(Date.now() - t0 >= 190, 'not before its TTL');
    // The tier warm-up decodes these very headers (src/tier/warm-up-frames.ts): the same names and values once
    // decoded (amqplib decodes every integer type to a number, so the types are not compared here).
    const got = (msg as unknown as amqp.GetMessage).properties.headers ?? {};
    const sec = (got['x-death'] as unknown as { time: { value: number } }[])[0]!.time.value;
    const synthetic = new WarmUpFrames().delivery(warmUpMessage(1, 0, 'http://127.0.0.1:9', sec * 1000, LIMITS, n.waitQueue(1))).properties.headers ?? {};
    const deathKeys = (h: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(h).filter(([k]) => k === 'x-death' || k.startsWith('x-first-death-')));
    assert.deepEqual(deathKeys(got), deathKeys(synthetic));
  });

  it('a wait queue honours a shorter per-message expiration, and the copy it dead-letters carries none (it cannot expire again in the work queue)', async () => {
    // What a hand-on whose attempt took part of its delay relies on (src/core/schedule.ts retryTiming).
    ch.sendToQueue(n.waitQueue(2), Buffer.from('{"id":"topo-3"}'), { persistent: true, messageId: 'topo-3', expiration: '20' });
    await ch.waitForConfirms();
    let msg: amqp.GetMessage | false = false;
    // The queue's own TTL is 3 s: arriving well before it is the message's expiration at work.
    await waitFor(async () => (msg = await ch.get(n.workQueue(2), { noAck: false })) !== false, 2000, 'message in work.2 before the queue TTL', 10);
    const got = msg as unknown as amqp.GetMessage;
    assert.equal(got.properties.messageId, 'topo-3');
    assert.equal(got.properties.expiration, undefined);
    // The warm-up's synthetic retries that expire by their own expiration have this very x-death (its
    // original-expiration last: the same shape once decoded); only the value of that expiration differs.
    const headers = got.properties.headers ?? {};
    const death = (headers['x-death'] as unknown as Record<string, unknown>[])[0]!;
    assert.equal(death['original-expiration'], '20');
    const sec = (death.time as { value: number }).value;
    const i = [0, 1, 2, 3].find(warmUpExpires)!;
    const synthetic = new WarmUpFrames().delivery(warmUpMessage(2, i, 'http://127.0.0.1:9', sec * 1000, LIMITS, n.waitQueue(2))).properties.headers ?? {};
    const syntheticDeath = (synthetic['x-death'] as unknown as Record<string, unknown>[])[0]!;
    assert.deepEqual(Object.keys(syntheticDeath), Object.keys(death));
    assert.deepEqual({ ...syntheticDeath, 'original-expiration': '20' }, death);
    ch.nack(got, false, true);
    await new Promise((r) => setTimeout(r, 300));
    const again = await ch.get(n.workQueue(2), { noAck: true });
    assert.ok(again !== false && again.properties.messageId === 'topo-3', 'still in work.2, not expired to P.dead');
    assert.equal(await ch.get(n.dead, { noAck: true }), false);
  });
});

describe('topology declared by an older notifyd (quorum queues without the leader locator)', () => {
  const prefix = uniquePrefix('topo-old');
  const topo = buildTopology(prefix, parseSchedule(SCHEDULE), 'quorum');
  let conn: ChannelModel;

  before(async () => {
    conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    for (const q of topo.queues) await ch.assertQueue(q.name, { durable: true, arguments: { ...withoutLeaderLocator(q).arguments } });
    await ch.close();
  });

  after(async () => {
    await conn?.close().catch(() => undefined);
    await deletePrefix(prefix, SCHEDULE);
  });

  it('is kept as it is and reported, not refused (the broker would refuse the new argument: PRECONDITION_FAILED)', async () => {
    const r = await declareTopology(conn, topo);
    assert.deepEqual([...r.withoutLeaderLocator].sort(), topo.queues.map((q) => q.name).sort());
    const ch = await conn.createChannel();
    for (const b of topo.bindings) await ch.bindQueue(b.queue, b.exchange, b.routingKey);
    await ch.close();
  });

  it('any other difference (another schedule) is still refused', async () => {
    const other = buildTopology(prefix, parseSchedule('0s,300ms'), 'quorum');
    await assert.rejects(declareTopology(conn, other), /PRECONDITION_FAILED.*x-message-ttl/);
  });
});
