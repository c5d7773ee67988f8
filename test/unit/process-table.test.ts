// The master's process table with real forked processes (a recording
// fixture, not a tier): what a worker is told right after it asks for its
// config, in order.
import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { ProcessTable, type Slot } from '../../src/supervisor/process-table.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/recording-worker.ts', import.meta.url));
const config = loadConfig({ env: {} });

/**
 * Forks one tier slot (paused or not) and returns what its worker recorded
 * once it was told `want` messages, and then the messages `then` (given the
 * table and slot) says it sent. The fixture never reports ready.
 */
async function firstMessages(paused: boolean, want: number, then?: (table: ProcessTable, slot: Slot) => Promise<number>): Promise<string[]> {
  let recorded: string[] = [];
  const onMessage = (_w: unknown, msg: unknown): void => {
    const r = (msg as { recorded?: string[] })?.recorded;
    if (Array.isArray(r)) recorded = r;
  };
  cluster.on('message', onMessage);
  let stopped!: () => void;
  const allStopped = new Promise<void>((r) => (stopped = r));
  const table = new ProcessTable({
    logger: createLogger('silent', {}),
    entries: { tier: FIXTURE, ingress: FIXTURE, recorder: FIXTURE },
    config: () => config,
    initPorts: () => [9464],
    onAllStopped: () => stopped(),
  });
  const slot = table.add('tier-0', 'tier', 0);
  slot.paused = paused;
  cluster.setupPrimary({ execArgv: ['--import', 'tsx'] });
  table.startRole('tier');
  try {
    const told = async (n: number): Promise<void> => {
      for (let i = 0; i < 200 && recorded.length < n; i++) await new Promise((r) => setTimeout(r, 50));
    };
    await told(want);
    if (then) {
      const before = recorded.length;
      const sent = await then(table, slot);
      await told(before + sent);
    }
    return recorded;
  } finally {
    table.drain(Date.now() + 2000);
    await allStopped;
    cluster.off('message', onMessage);
  }
}

describe('process table: what a worker is told after init', () => {
  it("init with notifyd's own ports in it (read before the worker starts, whatever the pipe's timing), then the tier's pause state", async () => {
    assert.deepEqual(await firstMessages(false, 2), ['init ports 9464', 'resume']);
    assert.deepEqual(await firstMessages(true, 2), ['init ports 9464', 'pause']);
  });

  it('a pause or resume for a worker not ready yet is sent, and leaves its state `starting` (not counted ready)', async () => {
    const states: string[] = [];
    const got = await firstMessages(true, 2, async (table, slot) => {
      table.setPaused(slot, false);
      states.push(slot.state);
      table.setPaused(slot, true);
      states.push(slot.state);
      return 2;
    });
    assert.deepEqual(got.slice(2), ['resume', 'pause']);
    assert.deepEqual(states, ['starting', 'starting']);
  });
});

describe('process table: a worker whose process never started', () => {
  /** A cluster Worker whose spawn failed as Node reports it: no pid, an 'error', never an 'exit'. */
  const unspawned = (): EventEmitter & { process: { pid: undefined; kill: () => boolean }; isConnected: () => boolean } => {
    const w = Object.assign(new EventEmitter(), { process: { pid: undefined, kill: () => false }, isConnected: () => false, send: () => false });
    process.nextTick(() => w.emit('error', Object.assign(new Error('spawn EAGAIN'), { code: 'EAGAIN' })));
    return w;
  };

  const table = (onAllStopped: () => void): ProcessTable =>
    new ProcessTable({ logger: createLogger('silent', {}), entries: { tier: FIXTURE, ingress: FIXTURE, recorder: FIXTURE }, config: () => config, initPorts: () => [], onAllStopped });

  it('is restarted after its backoff (EAGAIN, EMFILE: out of processes or descriptors), and a drain does not wait for it', async (t) => {
    const fork = t.mock.method(cluster, 'fork', () => unspawned());
    let stopped = false;
    const tbl = table(() => (stopped = true));
    const slot = tbl.add('tier-0', 'tier', 0);
    tbl.startRole('tier');
    for (let i = 0; i < 100 && fork.mock.callCount() < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(fork.mock.callCount() >= 2, 'forked again');
    assert.ok(slot.restarts >= 1);
    // Draining with the last one not started either: all stopped at once, not after a kill that cannot reach it.
    await new Promise((r) => setImmediate(r));
    tbl.drain(Date.now() + 60_000);
    for (let i = 0; i < 50 && !stopped; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(stopped, true);
    assert.equal(slot.state, 'stopped');
  });

  it('a fork that throws does not end the master: it is restarted too', async (t) => {
    let calls = 0;
    t.mock.method(cluster, 'fork', () => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('spawn ENOMEM'), { code: 'ENOMEM' });
      return unspawned();
    });
    let stopped = false;
    const tbl = table(() => (stopped = true));
    tbl.add('tier-0', 'tier', 0);
    tbl.startRole('tier');
    for (let i = 0; i < 100 && calls < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(calls >= 2, 'forked again after the throw');
    tbl.drain(Date.now() + 60_000);
    for (let i = 0; i < 50 && !stopped; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(stopped, true);
  });
});
