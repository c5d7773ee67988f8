import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/core/config.js';
import { WARMED_MIN_SEMI_SPACE_MIB, workerV8Flags } from '../../src/supervisor/worker-flags.js';

const run = promisify(execFile);

/**
 * A worker's life in small: a busy spell grows the young generation, a quiet
 * one follows, then work comes back. Prints the young generation's capacity
 * (MiB) after each step.
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

describe("a warmed tier worker's young generation", () => {
  it('keeps its floor through a quiet spell, so the burst that ends it does not start with a young generation of 1 MiB', { timeout: 60_000 }, async () => {
    const config = loadConfig({ configFile: null, env: {} });
    const flags = workerV8Flags('tier', 1, config);
    assert.ok(flags.includes(`--min-semi-space-size=${WARMED_MIN_SEMI_SPACE_MIB}`), flags.join(' '));
    // 20 s: V8 shrank the young generation of a process run with the memory reducer off alone, at the first
    // scavenge after a spell this quiet, in every try on this machine (to 1 MiB; after 10 s in one try of three).
    const { stdout } = await run(process.execPath, [...flags, '-e', PROBE, '20000'], { timeout: 50_000 });
    const { grown, woken } = JSON.parse(stdout) as { grown: number; woken: number };
    assert.ok(grown >= WARMED_MIN_SEMI_SPACE_MIB, `the busy spell grew it (${grown} MiB)`);
    assert.ok(woken >= WARMED_MIN_SEMI_SPACE_MIB, `after the quiet spell ${woken} MiB, floor ${WARMED_MIN_SEMI_SPACE_MIB}`);
  });
});
