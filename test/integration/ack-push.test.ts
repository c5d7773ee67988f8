// A tier worker pushes its acks past Nagle's algorithm (pushPendingWrites in
// src/broker/connection.ts) through amqplib's socket. Checked on a real
// connection to the system broker: an amqplib that keeps its socket
// elsewhere fails here instead of silently bringing the 40-ms ack stall
// back (docs/performance.md, stop 36), and pushes on a live connection
// leave the protocol whole. That a worker's push comes after amqplib's own
// write of its acks is checked against amqplib's code in
// test/unit/write-push.test.ts. Not tested: whether a push sends anything
// sooner (the bench's to show: the kernel's send queue is not visible from
// here).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import { AMQP_URL } from '../../bench/daemon-process.js';
import { amqpSocketOf, connectBroker, pushPendingWrites } from '../../src/broker/connection.js';
import { parseBrokerNodes } from '../../src/core/broker-nodes.js';

describe('acks pushed past Nagle (system broker)', () => {
  it('finds the TCP socket of a real connection, and acks with pushes between them all reach the broker', { timeout: 30_000 }, async () => {
    const { conn } = await connectBroker(parseBrokerNodes(AMQP_URL), 'notifyd test ack push');
    try {
      assert.ok(amqpSocketOf(conn) instanceof Socket, 'amqplib keeps its socket where notifyd looks for it');
      const ch = await conn.createConfirmChannel();
      const q = (await ch.assertQueue(`t-ack-push-${randomBytes(4).toString('hex')}`, { exclusive: true })).queue;
      const n = 200;
      for (let i = 0; i < n; i++) ch.sendToQueue(q, Buffer.from(String(i)));
      await ch.waitForConfirms();
      await ch.prefetch(n);
      const seen: number[] = [];
      await new Promise<void>((resolve, reject) => {
        const got: ConsumeMessage[] = [];
        ch.on('error', reject);
        ch.on('close', () => reject(new Error('channel closed')));
        ch.consume(q, (m) => {
          try {
            if (m === null) throw new Error('consumer cancelled');
            got.push(m);
            seen.push(Number(m.content.toString()));
            if (got.length < n) return;
            // Acked one by one, out of order, as a worker acks behind a hanging head, each followed by a push.
            for (const g of got.reverse()) {
              ch.ack(g);
              if (!pushPendingWrites(conn)) throw new Error('no socket to push');
            }
            resolve();
          } catch (err) {
            reject(err as Error);
          }
        }).catch(reject);
      });
      assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i), 'every message, in order');
      // Closing the channel gives back whatever it had not acked: nothing may come back.
      await ch.close();
      const check = await conn.createChannel();
      assert.equal((await check.checkQueue(q)).messageCount, 0, 'every ack reached the broker');
      await check.deleteQueue(q);
    } finally {
      await conn.close().catch(() => undefined);
    }
  });
});
