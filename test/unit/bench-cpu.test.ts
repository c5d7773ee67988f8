import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuByWindow, type CpuReading } from '../../bench/cpu.js';

/** Readings every 100 ms from 0: the process spends `cpuPerTick(i)` ms in tick i, the machine is busy half of each tick. */
function readings(n: number, cpuPerTick: (i: number) => number): CpuReading[] {
  const out: CpuReading[] = [];
  let cpu = 0;
  for (let i = 0; i <= n; i++) {
    out.push({ at: i * 100, cpuMs: cpu, busy: i * 5, total: i * 10 });
    cpu += cpuPerTick(i);
  }
  return out;
}

describe('bench: CPU by window', () => {
  it("gives each window the process's CPU and the machine's busy share", () => {
    // 40 ms of CPU per 100 ms in the first second, 20 after.
    const r = cpuByWindow(readings(30, (i) => (i < 10 ? 40 : 20)), 0, 1000, 3);
    assert.deepEqual(r.cpuMs, [400, 200, 200]);
    assert.deepEqual(r.busyPct, [50, 50, 50]);
  });

  it('takes the last reading at or before each bound, and NaN for windows the readings do not cover', () => {
    const r = cpuByWindow(readings(15, (i) => i), 250, 1000, 2);
    // 250 → the reading at 200, 1250 → the reading at 1200: ticks 2..11 (65 ms; "at or after" would give 75).
    assert.equal(r.cpuMs[0], 65);
    assert.ok(Number.isNaN(r.cpuMs[1]!), 'readings end at 1500, before the second window does');
    assert.ok(Number.isNaN(r.busyPct[1]!));
    assert.deepEqual(cpuByWindow([], 0, 1000, 1).cpuMs.map(Number.isNaN), [true]);
    assert.ok(Number.isNaN(cpuByWindow(readings(15, () => 10), -500, 1000, 1).cpuMs[0]!), 'a window starting before the first reading');
    const gap = [{ at: 0, cpuMs: 0, busy: 0, total: 10 }, { at: 3000, cpuMs: 30, busy: 5, total: 20 }];
    assert.ok(Number.isNaN(cpuByWindow(gap, 500, 1000, 1).cpuMs[0]!), 'no reading inside a window longer gap');
  });

  it('gives NaN CPU but the machine share for a process that was gone', () => {
    const r = cpuByWindow(readings(10, () => 10).map((x) => ({ ...x, cpuMs: null })), 0, 1000, 1);
    assert.ok(Number.isNaN(r.cpuMs[0]!));
    assert.equal(r.busyPct[0], 50);
  });
});
