// The tier worker's consumer sync with a fake channel: however often the wish
// (pause, resume) changes while a consume or cancel is under way, the sync
// ends with the consumer the last wish asks for.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/core/config.js';
import { createWorkerMetrics } from '../../src/core/metrics.js';
import { TierWorker } from '../../src/tier/consumer.js';

describe('tier worker: consumer sync', () => {
  it('a wish that changes during every broker call, 11 times, still ends with the consumer it asks for', async () => {
    const config = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s', NOTIFY_PREFIX: 'p' } });
    const w = new TierWorker({ config, tier: 0, logger: pino({ level: 'silent' }), metrics: createWorkerMetrics({ role: 'tier', tier: '0' }, false) });
    const live = new Set<string>();
    let flips = 0;
    let made = 0;
    const later = <T>(v: T): Promise<T> => new Promise((r) => setImmediate(() => r(v)));
    const ch = {
      consume: () => {
        const tag = `c${++made}`;
        live.add(tag);
        // An operator pausing while the consume is under way.
        if (flips < 11) {
          flips++;
          void w.pause();
        }
        return later({ consumerTag: tag });
      },
      cancel: (tag: string) => {
        live.delete(tag);
        if (flips < 11) {
          flips++;
          void w.resume();
        }
        return later({});
      },
    };
    const inner = w as unknown as { ch: unknown; paused: boolean };
    inner.ch = ch;
    await w.resume();
    // Let every sync the flips started run out.
    for (let i = 0; i < 50; i++) await later(null);
    assert.equal(flips, 11);
    assert.equal(inner.paused, true, 'the last wish: paused');
    assert.equal(live.size, 0, 'no consumer left while paused');
    await w.resume();
    assert.equal(live.size, 1, 'and one again once resumed');
    inner.ch = null;
  });
  it('a drain while the broker connection is still opening: the connection, once open, is closed, not kept past stopped', async () => {
    const config = loadConfig({ env: { NOTIFY_SCHEDULE: '0s,1s', NOTIFY_PREFIX: 'p' } });
    const w = new TierWorker({ config, tier: 0, logger: pino({ level: 'silent' }), metrics: createWorkerMetrics({ role: 'tier', tier: '0' }, false) });
    let opened!: (c: unknown) => void;
    const inner = w as unknown as { ring: unknown; conn: unknown; ch: unknown; connectLoop: () => Promise<void> };
    inner.ring = { connect: () => new Promise((r) => (opened = r)), node: null, close: () => undefined };
    const ch = Object.assign(new EventEmitter(), { checkQueue: async () => ({}), prefetch: async () => ({}), close: async () => undefined });
    let closed = 0;
    const conn = Object.assign(new EventEmitter(), {
      createConfirmChannel: async () => ch,
      close: async () => {
        closed++;
        conn.emit('close');
      },
    });
    const loop = inner.connectLoop();
    await new Promise((r) => setImmediate(r));
    const drained = w.drain(Date.now() + 1000);
    opened(conn);
    await drained;
    await loop;
    assert.equal(closed, 1, 'closed');
    assert.equal(inner.conn, null);
    assert.equal(inner.ch, null);
  });
});
