import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/core/config.js';
import { WARMED_MIN_SEMI_SPACE_MIB, workerExecArgv, workerV8Flags } from '../../src/supervisor/worker-flags.js';

describe('worker V8 flags', () => {
  const config = loadConfig({ configFile: null, env: {} });
  const WARMED = ['--no-memory-reducer', `--min-semi-space-size=${WARMED_MIN_SEMI_SPACE_MIB}`];

  it('a warmed tier runs without the memory reducer and with a floor under its young generation (by default tier 1); other tiers and roles run as node does', () => {
    assert.deepEqual(config.delivery.warmUpTiers, [1]);
    assert.deepEqual(workerV8Flags('tier', 1, config), WARMED);
    assert.deepEqual(workerV8Flags('tier', 0, config), []);
    assert.deepEqual(workerV8Flags('tier', 2, config), []);
    assert.deepEqual(workerV8Flags('ingress', null, config), []);
    assert.deepEqual(workerV8Flags('recorder', null, config), []);
  });

  it('follows the configuration: the tiers it names, none with the warm-up off', () => {
    const both = { ...config, delivery: { ...config.delivery, warmUpTiers: [0, 1] } };
    assert.deepEqual(workerV8Flags('tier', 0, both), WARMED);
    const off = loadConfig({ configFile: null, env: { NOTIFY_DELIVERY_WARM_UP: '0' } });
    assert.deepEqual(workerV8Flags('tier', 1, off), []);
  });

  it("keeps the master's arguments, its own flags included, and adds the slot's after them", () => {
    const base = ['--import', 'tsx', '--max-old-space-size=512'];
    assert.deepEqual(workerExecArgv(base, 'tier', 1, config), [...base, ...WARMED]);
    assert.deepEqual(workerExecArgv(base, 'tier', 0, config), base);
    const master = ['--no-memory-reducer'];
    assert.deepEqual(workerExecArgv(master, 'ingress', null, config), master);
  });
});
