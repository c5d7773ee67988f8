import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU time accounting from /proc/<pid>/stat (utime + stime). On a shared
 * 2-core machine throughput swings with whatever else runs; CPU spent per
 * notification does much less, so the bench reports both.
 */
let ticksPerSec = 100;
try {
  ticksPerSec = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* Linux default */
}

/** utime + stime of a process in ms, or null when it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: fields start after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / ticksPerSec;
  } catch {
    return null;
  }
}

/**
 * Clock ticks the whole machine spent busy, and in all, since boot (first
 * line of /proc/stat): two reads give how busy it was in between. Busy is
 * user, nice, system, irq, softirq and steal; idle and iowait are not.
 */
export function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** Pids whose /proc/<pid>/comm is `name` (e.g. `beam.smp`, `redis-server`). */
export function pidsByComm(name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === name) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** CPU ms spent by named groups of processes between `start()` and `stop()`. */
export class CpuMeter {
  private before = new Map<number, number>();

  constructor(private readonly groups: Record<string, readonly number[]>) {}

  start(): this {
    for (const pids of Object.values(this.groups)) for (const p of pids) this.before.set(p, cpuMs(p) ?? 0);
    return this;
  }

  stop(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [g, pids] of Object.entries(this.groups)) {
      let ms = 0;
      for (const p of pids) {
        const now = cpuMs(p);
        if (now !== null) ms += now - (this.before.get(p) ?? now);
      }
      out[g] = ms;
    }
    return out;
  }
}

/** One reading of a `CpuTimeline`: when (ms on `performance.now()`'s clock), the process's CPU ms, the machine's ticks. */
export interface CpuReading {
  readonly at: number;
  readonly cpuMs: number | null;
  readonly busy: number;
  readonly total: number;
}

/** Pure: how busy the machine was between two readings of its ticks, % (unrounded). */
export function busyPctBetween(a: { busy: number; total: number }, b: { busy: number; total: number }): number {
  return (100 * (b.busy - a.busy)) / Math.max(1, b.total - a.total);
}

/**
 * Pure: per window of `windowMs` from `startAt` (`count` of them), the CPU ms
 * the process spent and how busy the machine was (%), from readings in time
 * order. Each bound takes the last reading at or before it, so a window is as
 * exact as the sampling interval; NaN where readings do not cover it.
 */
export function cpuByWindow(readings: readonly CpuReading[], startAt: number, windowMs: number, count: number): { cpuMs: number[]; busyPct: number[] } {
  const at = (t: number): CpuReading | null => {
    let last: CpuReading | null = null;
    for (const r of readings) {
      if (r.at > t) break;
      last = r;
    }
    return last;
  };
  const cpu: number[] = [];
  const busy: number[] = [];
  for (let i = 0; i < count; i++) {
    const a = at(startAt + i * windowMs);
    const b = at(startAt + (i + 1) * windowMs);
    const covered = a !== null && b !== null && b !== a && readings[readings.length - 1]!.at >= startAt + (i + 1) * windowMs;
    cpu.push(covered && a.cpuMs !== null && b.cpuMs !== null ? Math.round(b.cpuMs - a.cpuMs) : NaN);
    busy.push(covered ? Math.round(busyPctBetween(a, b)) : NaN);
  }
  return { cpuMs: cpu, busyPct: busy };
}

/**
 * Samples one process's CPU time and the machine's ticks every `everyMs`
 * (for what a run spends second by second: the cold bench's tier 1 in the
 * second its first retries arrive, against later seconds).
 */
export class CpuTimeline {
  readonly readings: CpuReading[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pid: number | null,
    private readonly everyMs = 100,
  ) {}

  start(): this {
    this.read();
    this.timer = setInterval(() => this.read(), this.everyMs);
    // A run that fails must not be kept alive by its sampler.
    this.timer.unref();
    return this;
  }

  /** Takes a last reading and stops. Idempotent. */
  stop(): readonly CpuReading[] {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
      this.read();
    }
    return this.readings;
  }

  private read(): void {
    const m = machineTicks();
    this.readings.push({ at: performance.now(), cpuMs: this.pid === null ? null : cpuMs(this.pid), busy: m.busy, total: m.total });
  }
}
