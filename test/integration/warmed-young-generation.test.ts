import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/core/config.js';
import { WARMED_MIN_SEMI_SPACE_MIB, workerV8Flags } from '../../src/supervisor/worker-flags.js';

const run = promisify(execFile);

/**
 * A worker's life in small: a busy spell grows the young generation, a quiet
 * one follows, then work comes back. Prints the young generation's committed
 * size (MiB, both semi-spaces while both are committed) after the busy spell
 * and after the work that ended the quiet one.
 */
const PROBE = `
const v8 = require('node:v8');
const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576;
let keep = [];
const t0 = Date.now();
// Short-lived objects with some survivors, as in-flight attempts are.
while (Date.now() - t0 < 1500) {
  const a = [];
  for (let i = 0; i < 1000; i++) a.push({ i, s: 'x' + i });
  keep.push(a);
  if (keep.length > 50) keep.shift();
}
keep = [];
const grown = young();
setTimeout(() => {
  let junk = [];
  for (let k = 0; k < 20; k++) { for (let i = 0; i < 20000; i++) junk.push({ i }); junk = []; }
  process.stdout.write(JSON.stringify({ grown, woken: young() }));
}, Number(process.argv[1]));
`;

/** The probe's two readings in a child run with `flags`, after a quiet spell of `quietMs`. */
async function probe(flags: readonly string[], quietMs: number): Promise<{ grown: number; woken: number }> {
  const { stdout } = await run(process.execPath, [...flags, '-e', PROBE, String(quietMs)], { timeout: quietMs + 30_000 });
  return JSON.parse(stdout) as { grown: number; woken: number };
}

describe("a warmed tier worker's young generation", () => {
  it('keeps its floor through a quiet spell, so the burst that ends it does not start with a young generation of 1 MiB', { timeout: 90_000 }, async () => {
    const config = loadConfig({ configFile: null, env: {} });
    const flags = workerV8Flags('tier', 1, config);
    const floorFlag = `--min-semi-space-size=${WARMED_MIN_SEMI_SPACE_MIB}`;
    assert.ok(flags.includes(floorFlag), flags.join(' '));
    // 25 s: V8 shrinks the young generation when less than about 1 KB/ms was allocated since the last scavenge,
    // which after the busy spell takes about 17 s of quiet here. The same flags without the floor, side by side,
    // show the spell was quiet enough.
    const quietMs = 25_000;
    const [kept, control] = await Promise.all([probe(flags, quietMs), probe(flags.filter((f) => f !== floorFlag), quietMs)]);
    // V8 lowers the floor to its ceiling where that is smaller (a small host): the busy spell grew the young
    // generation to the ceiling, both semi-spaces committed.
    const floor = Math.min(WARMED_MIN_SEMI_SPACE_MIB, control.grown / 2);
    assert.ok(control.woken < floor, `without the floor the quiet spell shrank it: ${JSON.stringify(control)}, floor ${floor}`);
    assert.ok(kept.woken >= floor, `with the floor: ${JSON.stringify(kept)}, floor ${floor}`);
  });
});
