// The call watchdog: StuckCalls' bookkeeping, then watchCalls on amqplib's own
// ChannelModel, Connection and channels (the version notifyd pins) over a
// socket that swallows what is written, so the test plays the broker: it
// answers a call by handing the channel its reply frame, or never does.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Duplex } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { StuckCalls } from '../../src/broker/stuck-calls.js';
import { UNANSWERED_CALL_MS, waitsOf, watchCalls } from '../../src/broker/call-watchdog.js';
import { CONFIRM_TIMEOUT_MS } from '../../src/broker/confirm-deadlines.js';
import { CLOSE_WITHIN_MS } from '../../src/broker/connection.js';
import { closeChannelWithin } from '../../src/broker/open-within.js';
import type { Logger } from '../../src/core/logger.js';

describe('StuckCalls', () => {
  const a = {};
  const b = {};
  it('a token seen unchanged ages from its first sighting; a new token starts again', () => {
    const s = new StuckCalls();
    assert.equal(s.observe(1000, [[a, 'x']]), 0);
    assert.equal(s.observe(1500, [[a, 'x']]), 500);
    assert.equal(s.observe(2000, [[a, 'y']]), 0, 'answered: the next call is a new wait');
    assert.equal(s.observe(2600, [[a, 'y']]), 600);
  });

  it('reports the longest of several channels, and nothing for channels that wait for nothing', () => {
    const s = new StuckCalls();
    s.observe(0, [[a, 'x'], [b, null]]);
    assert.equal(s.observe(100, [[a, 'x'], [b, 'z']]), 100);
    assert.equal(s.observe(300, [[a, 'x'], [b, 'z']]), 300);
    assert.equal(s.observe(400, [[a, null], [b, 'z']]), 300);
  });

  it('forgets channels no longer listed', () => {
    const s = new StuckCalls();
    s.observe(0, [[a, 'x']]);
    s.observe(100, [[b, 'z']]);
    assert.equal(s.observe(200, [[a, 'x']]), 0, 'a was forgotten while it was not listed');
  });
});

const require = createRequire(import.meta.url);
// amqplib's internals, loaded by file from the installed package (its exports are only the two APIs).
const amqplibDir = dirname(require.resolve('amqplib'));
const { Connection } = require(join(amqplibDir, 'lib', 'connection.js')) as { Connection: new (s: Duplex) => AmqpConnection };
const { ChannelModel } = require(join(amqplibDir, 'lib', 'channel_model.js')) as { ChannelModel: new (c: AmqpConnection) => Model };
const defs = require(join(amqplibDir, 'lib', 'defs.js')) as Record<string, number>;

interface AmqpConnection {
  accept: unknown;
  blocked: boolean;
  channels: ({ channel: { accept(f: unknown): void } } | null)[];
  onSocketError(err: Error): void;
  emit(event: string, ...args: unknown[]): boolean;
}
interface AmqpChannel {
  readonly ch: number;
  publish(exchange: string, key: string, body: Buffer): boolean;
  prefetch(n: number): Promise<unknown>;
  close(): Promise<void>;
}
interface Model {
  readonly connection: AmqpConnection;
  createChannel(): Promise<AmqpChannel>;
  createConfirmChannel(): Promise<AmqpChannel>;
  close(): Promise<void>;
  on(ev: string, fn: (...a: unknown[]) => void): unknown;
  once(ev: 'close', fn: () => void): unknown;
}

class SinkSocket extends Duplex {
  override _read(): void {}
  override _write(_c: Buffer, _e: BufferEncoding, cb: () => void): void {
    cb();
  }
}

/** A ChannelModel as amqplib leaves one after its handshake, on a socket that goes nowhere. */
function amqp(): { model: Model; sock: SinkSocket; errors: unknown[]; closed: () => boolean; lines: string[]; log: Logger } {
  const sock = new SinkSocket();
  const connection = new Connection(sock);
  // What the handshake sets up: socket errors end the connection, and frames go to the open connection's handler.
  sock.on('error', (err: Error) => connection.onSocketError(err));
  connection.accept = function mainAccept(): void {};
  const model = new ChannelModel(connection);
  const errors: unknown[] = [];
  let closed = false;
  model.on('error', (e) => errors.push(e));
  model.on('close', () => (closed = true));
  const lines: string[] = [];
  const log = { error: (_o: unknown, msg: string) => lines.push(msg) } as unknown as Logger;
  return { model, sock, errors, closed: () => closed, lines, log };
}

/** The broker blocks or unblocks the connection (a memory or disk alarm), as amqplib records and announces it. */
function block(model: Model, on: boolean): void {
  model.connection.blocked = on;
  model.connection.emit(on ? 'blocked' : 'unblocked', on ? 'low on memory' : undefined);
}

/** The broker's answer `method` to channel `n`'s pending call. */
function answer(model: Model, n: number, method: string): void {
  model.connection.channels[n]!.channel.accept({ id: defs[method], channel: n, fields: {} });
}

/** Opens a channel, the broker answering at once. */
async function opened(model: Model): Promise<AmqpChannel> {
  const opening = model.createChannel();
  // amqplib sends the open a few microtasks later.
  await immediate();
  answer(model, model.connection.channels.length - 1, 'ChannelOpenOk');
  return opening;
}

describe('watchCalls (amqplib as pinned)', () => {
  // The watchdog's timer does not keep a process alive (the socket does, in life); here nothing else would.
  let keepAlive: NodeJS.Timeout;
  beforeEach(() => (keepAlive = setInterval(() => undefined, 1000)));
  afterEach(() => clearInterval(keepAlive));

  it("gives its bound after the bounds of single calls while connecting and their close, and after RabbitMQ's own 15-s channel operation timeout", () => {
    assert.ok(UNANSWERED_CALL_MS > CONFIRM_TIMEOUT_MS + CLOSE_WITHIN_MS);
    assert.ok(UNANSWERED_CALL_MS >= 2 * 15_000);
  });

  it('a call left unanswered: the socket is destroyed, the call fails, the connection closes with a coded error', async () => {
    const { model, sock, errors, closed, lines, log } = amqp();
    watchCalls(model, { timeoutMs: 300, everyMs: 20, log, owner: 'tier 0' });
    const ch = await opened(model);
    const t0 = Date.now();
    const qos = ch.prefetch(10);
    await assert.rejects(qos, /no reply will be forthcoming/);
    const ms = Date.now() - t0;
    assert.ok(ms >= 290 && ms < 2000, `gave up after ${ms} ms`);
    assert.ok(sock.destroyed);
    assert.ok(closed());
    assert.equal((errors[0] as { code?: string }).code, 'BROKER_UNAVAILABLE');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /tier 0's connection unanswered/);
  });

  it('calls answered in time, one after another for longer than the bound, leave the connection alone', async () => {
    const { model, sock, log } = amqp();
    watchCalls(model, { timeoutMs: 300, everyMs: 20, log, owner: 'x' });
    const ch = await opened(model);
    for (let i = 0; i < 5; i++) {
      const qos = ch.prefetch(i + 1);
      await sleep(100);
      answer(model, ch.ch, 'BasicQosOk');
      await qos;
    }
    // Calls queued behind one another on a channel (amqplib sends one at a time): each answer starts the next wait.
    const queued = [ch.prefetch(1), ch.prefetch(2), ch.prefetch(3), ch.prefetch(4)];
    for (let i = 0; i < queued.length; i++) {
      await sleep(100);
      answer(model, ch.ch, 'BasicQosOk');
    }
    await Promise.all(queued);
    await sleep(100);
    assert.equal(sock.destroyed, false);
  });

  it('publishes on a confirm channel and deliveries to a consumer are not calls', async () => {
    const { model, sock, log } = amqp();
    watchCalls(model, { timeoutMs: 300, everyMs: 20, log, owner: 'x' });
    const opening = model.createConfirmChannel();
    await immediate();
    const n = model.connection.channels.length - 1;
    answer(model, n, 'ChannelOpenOk');
    await immediate();
    answer(model, n, 'ConfirmSelectOk');
    const ch = await opening;
    // Never confirmed: a confirm is bounded where it is awaited (ConfirmDeadlines, callWithin), not here.
    for (let i = 0; i < 5; i++) ch.publish('', 'q', Buffer.from('x'));
    await sleep(500);
    assert.equal(sock.destroyed, false);
    assert.deepEqual(waitsOf(model.connection, model.connection.accept).filter(([, t]) => t !== null), []);
  });

  it('time while the broker blocks the connection does not count, however often the block flaps', async () => {
    const { model, sock, log } = amqp();
    watchCalls(model, { timeoutMs: 300, everyMs: 20, log, owner: 'x' });
    const ch = await opened(model);
    block(model, true);
    const qos = ch.prefetch(1).catch((e: Error) => e);
    await sleep(600);
    assert.equal(sock.destroyed, false, 'blocked: not given up');
    // Unblocked 100 ms in every 200: the wait ages by the unblocked time only, and keeps its age through each block.
    const t0 = Date.now();
    const flap = setInterval(() => block(model, !model.connection.blocked), 100);
    try {
      assert.match(String(await qos), /no reply will be forthcoming/);
    } finally {
      clearInterval(flap);
    }
    const ms = Date.now() - t0;
    assert.ok(ms >= 450 && ms < 3000, `given up after ${ms} ms of flapping (300 ms of it unblocked)`);
  });

  it("a channel's close and the connection's own close are calls too", async () => {
    for (const closeWhat of ['channel', 'connection'] as const) {
      const { model, sock, closed, log } = amqp();
      watchCalls(model, { timeoutMs: 300, everyMs: 20, log, owner: 'x' });
      const ch = await opened(model);
      let settled = false;
      const closing = closeWhat === 'channel' ? ch.close() : model.close();
      void closing.then(
        () => (settled = true),
        () => (settled = true),
      );
      await sleep(100);
      assert.equal(sock.destroyed, false, `${closeWhat}: still waiting`);
      await sleep(700);
      assert.ok(sock.destroyed, `${closeWhat}: given up`);
      assert.ok(closed());
      // amqplib settles a close only on its close-ok: whoever awaits one must bound it (closeChannelWithin, closeWithin).
      assert.equal(settled, false, `${closeWhat}: amqplib's close promise is left pending`);
      if (closeWhat === 'channel') {
        const t0 = Date.now();
        await closeChannelWithin(ch, 100);
        assert.ok(Date.now() - t0 < 1000, 'closeChannelWithin gives up on it');
      }
    }
  });

  it('a close answered in time is no wait, and the watchdog stops with the connection', async () => {
    // Its timer is unref'd (not listed among active resources): count what it sets and clears instead.
    const live = new Set<unknown>();
    const { setInterval: set, clearInterval: clear } = globalThis;
    globalThis.setInterval = ((fn: () => void, ms: number) => {
      const t = set(fn, ms);
      live.add(t);
      return t;
    }) as typeof setInterval;
    globalThis.clearInterval = ((t: NodeJS.Timeout) => {
      live.delete(t);
      clear(t);
    }) as typeof clearInterval;
    try {
      const { model, sock, log } = amqp();
      watchCalls(model, { timeoutMs: 300, everyMs: 20, log, owner: 'x' });
      assert.equal(live.size, 1);
      const ch = await opened(model);
      const closing = ch.close();
      answer(model, ch.ch, 'ChannelCloseOk');
      await closing;
      assert.deepEqual(
        waitsOf(model.connection, model.connection.accept).filter(([, t]) => t !== null),
        [],
        'nothing waits once the close-ok came',
      );
      sock.destroy(new Error('connection reset by peer'));
      await sleep(50);
      assert.equal(live.size, 0, 'its timer cleared when the connection closed');
    } finally {
      globalThis.setInterval = set;
      globalThis.clearInterval = clear;
    }
  });

  it('a stand-in without amqplib internals leaves the watchdog idle', () => {
    const stop = watchCalls({}, { log: {} as Logger, owner: 'x' });
    stop();
    assert.deepEqual(waitsOf({}, null), []);
  });
});
