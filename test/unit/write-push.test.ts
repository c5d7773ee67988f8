// WritePush runs after amqplib has written a frame to its socket: checked
// against amqplib's own Connection, channel buffer and muxer (the version
// notifyd pins) on a socket that records what was written when it is pushed.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { setImmediate as immediate } from 'node:timers/promises';
import { WritePush } from '../../src/broker/write-push.js';
import { pushPendingWrites } from '../../src/broker/connection.js';

const require = createRequire(import.meta.url);
// amqplib's internals, not its API (its package exports only the two APIs):
// what a ChannelModel keeps as `connection`, loaded by file from the
// installed package.
const amqplibDir = dirname(require.resolve('amqplib'));
const { Connection } = require(join(amqplibDir, 'lib', 'connection.js')) as { Connection: new (s: Duplex) => AmqpConnection };
const defs = require(join(amqplibDir, 'lib', 'defs.js')) as { BasicAck: number };

interface AmqpConnection {
  stream: Duplex;
  freshChannel(channel: unknown, options?: unknown): number;
  sendMethod(channel: number, method: number, fields: Record<string, unknown>): boolean;
}

/** A socket that counts the bytes written to it and, on each push (TCP_NODELAY on), how many there were. */
class RecordingSocket extends Duplex {
  written = 0;
  readonly pushedAt: number[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.written += chunk.length;
    cb();
  }
  setNoDelay(on: boolean): this {
    if (on) this.pushedAt.push(this.written);
    return this;
  }
}

/** amqplib's connection on a recording socket, with one open channel, as a ChannelModel holds it. */
function amqpOn(): { model: { connection: AmqpConnection }; sock: RecordingSocket; ack(tag: number): void } {
  const sock = new RecordingSocket();
  const connection = new Connection(sock);
  const ch = connection.freshChannel({ accept: () => undefined });
  const ack = (tag: number): void => void connection.sendMethod(ch, defs.BasicAck, { deliveryTag: tag, multiple: false });
  return { model: { connection }, sock, ack };
}

/**
 * Lets the nextTicks and two rounds of setImmediate run: enough when called
 * right after a request, whose first round holds amqplib's write and the push.
 */
async function settle(): Promise<void> {
  await immediate();
  await immediate();
}

describe('WritePush', () => {
  it('pushes after amqplib has written the frame to the socket', async () => {
    const { model, sock, ack } = amqpOn();
    assert.equal(model.connection.stream, sock, 'amqplib writes to the socket it was given');
    const push = new WritePush();
    ack(1);
    push.request(model);
    assert.equal(sock.written, 0, 'amqplib has not written yet');
    await settle();
    assert.ok(sock.written > 0);
    assert.deepEqual(sock.pushedAt, [sock.written]);
  });

  it('pushes once for every frame of a tick, and again for a frame after it', async () => {
    const { model, sock, ack } = amqpOn();
    const push = new WritePush();
    ack(1);
    push.request(model);
    ack(2);
    push.request(model);
    await settle();
    const oneTick = sock.written;
    assert.deepEqual(sock.pushedAt, [oneTick]);
    ack(3);
    push.request(model);
    await settle();
    assert.deepEqual(sock.pushedAt, [oneTick, sock.written]);
    assert.equal(sock.written, (oneTick * 3) / 2, 'three frames of one size');
  });

  it('pushes a frame made between its two hops (after the nextTick, before the push) with a push of its own', async () => {
    const { model, sock, ack } = amqpOn();
    const push = new WritePush();
    ack(1);
    // Queued between amqplib's nextTick and the push's: runs in the same
    // check phase as the first push, before it, after amqplib's first write.
    process.nextTick(() =>
      setImmediate(() => {
        ack(2);
        push.request(model);
      }),
    );
    push.request(model);
    await settle();
    await immediate();
    const frame = sock.written / 2;
    assert.ok(frame > 0);
    // The first push ran before amqplib wrote the second frame (in the next
    // loop round): only a push of its own sends that one.
    assert.deepEqual(sock.pushedAt, [frame, 2 * frame]);
  });

  it('pushes each connection asked for in a tick, once', async () => {
    const pushed: unknown[] = [];
    const push = new WritePush((c) => pushed.push(c));
    const a = { id: 'a' };
    const b = { id: 'b' };
    push.request(a);
    push.request(b);
    push.request(a);
    await settle();
    assert.deepEqual(pushed, [a, b]);
  });

  it('(why the nextTick) a push scheduled in the call that made the frame runs before amqplib writes it', async () => {
    const { model, sock, ack } = amqpOn();
    ack(1);
    setImmediate(() => pushPendingWrites(model));
    await settle();
    assert.ok(sock.written > 0);
    assert.deepEqual(sock.pushedAt, [0], 'the naive push found nothing written');
  });
});
